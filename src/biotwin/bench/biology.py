"""The biology suite: realistic biological systems from the literature, with known truth.

Each system is a ground-truth :class:`~biotwin.model.Model` written from a paper or a textbook
(its parameter defaults are the true values, its bounds the biologically sensible range), a few
training experiments that differ in initial state, dose or stimulus, and one held-out experiment
with an intervention the training data never showed: a knock-out, a new dose or schedule, a new
input level, a drug. The ``source`` of every system cites the model form and where its parameter
values come from, and says so when the values are only illustrative.

The suite covers mass action, Michaelis-Menten and Hill kinetics (activation and repression),
genetic and metabolic oscillators, a signalling cascade, epidemics, pharmacokinetics and
pharmacodynamics, tumour growth and therapy, ecology and within-host virus dynamics.
:data:`CATEGORIES` says which of these each system exercises.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

from biotwin.bench.systems import Design, System
from biotwin.data import Bolus, Input
from biotwin.model import Model

SUITE = "bio"


def _grid(stop: float, n: int, start: float = 0.0) -> np.ndarray:
    """``n`` evenly spaced measurement times from ``start`` to ``stop``."""
    return np.linspace(start, stop, n)


def _step(name: str, level: float, at: float = 0.0) -> Input:
    """An input switched on to ``level`` at time ``at`` and held."""
    return Input(name, (at,), (level,))


def _pulse(name: str, level: float, start: float, stop: float) -> Input:
    """An input at ``level`` from ``start`` to ``stop``, 0 before and after."""
    return Input(name, (start, stop), (level, 0.0))


# ---------------------------------------------------------------------- biochemistry
def reversible_binding() -> System:
    """Reversible binding of a receptor A and a ligand B into a complex C (mass action).

    A + B <-> C with association rate constant k_on and dissociation rate constant k_off:

        dA/dt = dB/dt = -k_on A B + k_off C,    dC/dt = k_on A B - k_off C.

    Concentrations in uM, time in s; K_D = k_off / k_on = 100 nM.
    """
    model = Model.from_text(
        """
        dA/dt = -kon*A*B + koff*C      # free receptor
        dB/dt = -kon*A*B + koff*C      # free ligand
        dC/dt = kon*A*B - koff*C       # complex
        kon in [1e-3, 10] log = 0.1    # association, 1/(uM s)  (1e5 1/(M s))
        koff in [1e-4, 1] log = 0.01   # dissociation, 1/s
        """,
        name="reversible_binding",
    )
    times = _grid(300.0, 31)
    designs = (
        Design("receptor_excess", {"A": 1.0, "B": 0.5, "C": 0.0}, times),
        Design("equimolar", {"A": 2.0, "B": 2.0, "C": 0.0}, times),
        Design("ligand_excess", {"A": 0.5, "B": 3.0, "C": 0.0}, times),
        Design(
            "heldout_ligand_added", {"A": 1.0, "B": 0.5, "C": 0.0}, times,
            doses=(Bolus(150.0, "B", 2.0),), held_out=True,
            description="a second addition of 2 uM ligand at t = 150 s",
        ),
    )
    return System(
        "reversible_binding", SUITE, model, designs,
        description="Mass-action reversible binding A + B <-> C of a protein and its ligand (uM, s).",
        source=(
            "Law of mass action (Guldberg & Waage 1864). Rate constants typical of protein-protein "
            "association, k_on = 1e5 1/(M s) and k_off = 1e-2 1/s (Schreiber & Fersht 1996, Nat Struct Biol "
            "3:427-431); values illustrative."
        ),
    )


def michaelis_menten() -> System:
    """Irreversible enzymatic conversion of a substrate S into a product P (Michaelis-Menten).

        v = Vmax S / (Km + S),    dS/dt = -v,    dP/dt = v,

    with Vmax = kcat [E]0. Concentrations in uM, time in s.
    """
    model = Model.from_text(
        """
        v = Vmax*S/(Km + S)
        dS/dt = -v                     # substrate (benzylpenicillin)
        dP/dt = v                      # product (penicilloic acid)
        Vmax in [0.01, 100] log = 2.0  # kcat*E0 = 2000 1/s * 1 nM, uM/s
        Km in [1, 1e4] log = 50.0      # uM
        """,
        name="michaelis_menten",
    )
    times = _grid(400.0, 33)
    designs = (
        Design("substrate_50uM", {"S": 50.0, "P": 0.0}, times),
        Design("substrate_200uM", {"S": 200.0, "P": 0.0}, times),
        Design("substrate_500uM", {"S": 500.0, "P": 0.0}, times),
        Design(
            "heldout_substrate_top_up", {"S": 200.0, "P": 0.0}, times,
            doses=(Bolus(150.0, "S", 400.0),), held_out=True,
            description="400 uM of substrate added at t = 150 s, after the first load is nearly used up",
        ),
    )
    return System(
        "michaelis_menten", SUITE, model, designs,
        description="Substrate depletion by an irreversible Michaelis-Menten enzyme (penicillinase; uM, s).",
        source=(
            "Michaelis & Menten (1913) Biochem Z 49:333-369; Briggs & Haldane (1925) Biochem J 19:338-339. "
            "kcat = 2000 1/s and Km = 50 uM of penicillinase (beta-lactamase) on benzylpenicillin from Berg, "
            "Tymoczko & Stryer, Biochemistry, 5th ed. (2002), Tables 8.5-8.6; enzyme at 1 nM (illustrative)."
        ),
    )


def hill_induction() -> System:
    """An inducible gene: an inducer activates transcription through a Hill function.

        dm/dt = a0 + a1 IPTG^n / (K^n + IPTG^n) - dm m,     dp/dt = kp m - dp p,

    m the reporter mRNA and p the reporter protein (GFP, molecules per cell); IPTG in uM, time in min.
    Only the fluorescent protein is measured.
    """
    model = Model.from_text(
        """
        input IPTG
        dm/dt = a0 + a1*IPTG^n/(K^n + IPTG^n) - dm*m    # reporter mRNA
        dp/dt = kp*m - dp*p                              # reporter protein (GFP)
        a0 in [1e-4, 1] log = 0.02     # leaky transcription, 1/min
        a1 in [0.1, 20] log = 2.0      # induced transcription, 1/min
        K in [1, 1000] log = 30.0      # IPTG for half activation, uM
        n in [1, 4] = 2.0              # Hill coefficient
        dm in [0.05, 2] log = 0.2      # mRNA decay (half-life 3.5 min), 1/min
        kp in [0.1, 50] log = 2.0      # translation, proteins per mRNA per min
        dp in [0.005, 0.2] log = 0.023 # dilution by growth (30 min doubling), 1/min
        """,
        name="hill_induction",
    )
    times = _grid(240.0, 25)
    theta = {p.name: p.value for p in model.parameters}
    m0 = theta["a0"] / theta["dm"]
    basal = {"m": m0, "p": theta["kp"] * m0 / theta["dp"]}  # the uninduced steady state
    designs = (
        Design("iptg_10uM", basal, times, inputs=(_step("IPTG", 10.0),)),
        Design("iptg_30uM", basal, times, inputs=(_step("IPTG", 30.0),)),
        Design("iptg_100uM", basal, times, inputs=(_step("IPTG", 100.0),)),
        Design(
            "heldout_saturating_pulse", basal, times, inputs=(_pulse("IPTG", 1000.0, 0.0, 60.0),),
            held_out=True,
            description="a saturating 1 mM IPTG pulse for 60 min, then washed out",
        ),
    )
    return System(
        "hill_induction", SUITE, model, designs,
        description="Gene induction: IPTG activates a reporter gene through a Hill function (n = 2); GFP observed.",
        source=(
            "Hill (1910) J Physiol 40:iv-vii; transcriptional input functions as in Alon (2006) An Introduction "
            "to Systems Biology (Chapman & Hall/CRC), ch. 2; Hill coefficient ~2 for IPTG induction of the lac "
            "promoter (Setty et al. 2003 PNAS 100:7702-7707). Rates illustrative for E. coli (mRNA half-life "
            "3.5 min, 30 min doubling)."
        ),
        observed=("p",),
    )


def toggle_switch() -> System:
    """The genetic toggle switch: two mutually repressing genes, flipped by IPTG.

        du/dt = alpha1 / (1 + v^beta) - u,
        dv/dt = alpha2 / (1 + (u / (1 + IPTG/K)^eta)^gamma) - v,

    u the LacI repressor and v the second repressor (cI), in scaled concentrations; time in
    units of the repressor lifetime; IPTG (mM) inactivates LacI.
    """
    model = Model.from_text(
        """
        input IPTG
        dlacI/dt = alpha1/(1 + cI^beta) - lacI
        dcI/dt = alpha2/(1 + (lacI/(1 + IPTG/K)^eta)^gamma) - cI
        alpha1 in [10, 1000] log = 156.25   # synthesis of LacI
        alpha2 in [1, 100] log = 15.6       # synthesis of cI
        beta in [1, 4] = 2.5                # cooperativity of repression by cI
        gamma in [1, 4] = 1.0               # cooperativity of repression by LacI
        K in [1e-3, 1] log = 0.029618       # IPTG dissociation constant, mM
        eta in [1, 4] = 2.0015              # cooperativity of IPTG binding
        """,
        name="toggle_switch",
    )
    times = _grid(20.0, 41)
    designs = (
        Design("from_low", {"lacI": 1.0, "cI": 1.0}, times),
        Design("lacI_state_induced", {"lacI": 150.0, "cI": 0.1}, times, inputs=(_step("IPTG", 2.0),)),
        Design("near_cI_state", {"lacI": 1.0, "cI": 8.0}, times),
        Design(
            "heldout_iptg_pulse", {"lacI": 150.0, "cI": 0.1}, times, inputs=(_pulse("IPTG", 0.5, 2.0, 8.0),),
            held_out=True,
            description="a 0.5 mM IPTG pulse from t = 2 to 8 flips the switch, which then remembers its state",
        ),
    )
    return System(
        "toggle_switch", SUITE, model, designs,
        description="Bistable genetic toggle switch with IPTG induction (Hill repression, scaled units).",
        source=(
            "Gardner, Cantor & Collins (2000) Nature 403:339-342: model and parameter values of Fig. 5 "
            "(alpha1 = 156.25, alpha2 = 15.6, beta = 2.5, gamma = 1, eta = 2.0015, K = 2.9618e-5 M)."
        ),
    )


# ---------------------------------------------------------------------- oscillators
def repressilator() -> System:
    """The repressilator: three genes in a ring of repression (lacI -| tetR -| cI -| lacI).

        dm_i/dt = -m_i + alpha_i / (1 + p_j^n) + alpha0,    dp_i/dt = -beta (p_i - m_i),

    with p_j the repressor of gene i; mRNA and protein in scaled units, time in mRNA lifetimes.
    Only the proteins (fluorescent fusions) are measured.
    """
    model = Model.from_text(
        """
        dm_lacI/dt = -m_lacI + alpha_lacI/(1 + p_cI^n) + alpha0
        dm_tetR/dt = -m_tetR + alpha_tetR/(1 + p_lacI^n) + alpha0
        dm_cI/dt = -m_cI + alpha_cI/(1 + p_tetR^n) + alpha0
        dp_lacI/dt = -beta*(p_lacI - m_lacI)
        dp_tetR/dt = -beta*(p_tetR - m_tetR)
        dp_cI/dt = -beta*(p_cI - m_cI)
        alpha_lacI in [10, 1000] log = 216.404   # promoter strength of lacI
        alpha_tetR in [0, 1000] = 216.404        # promoter strength of tetR
        alpha_cI in [0, 1000] = 216.404          # promoter strength of cI
        alpha0 in [0, 5] = 0.2164                # leakiness of repressed promoters
        n in [1, 4] = 2.0                        # Hill coefficient
        beta in [0.01, 5] log = 0.2              # protein / mRNA decay rate ratio
        """,
        name="repressilator",
    )
    times = _grid(120.0, 41)
    designs = (
        Design("lacI_high", {"m_lacI": 0, "m_tetR": 0, "m_cI": 0, "p_lacI": 5, "p_tetR": 0, "p_cI": 0}, times),
        Design("tetR_high", {"m_lacI": 0, "m_tetR": 10, "m_cI": 0, "p_lacI": 0, "p_tetR": 20, "p_cI": 1}, times),
        Design("mixed", {"m_lacI": 20, "m_tetR": 0, "m_cI": 5, "p_lacI": 10, "p_tetR": 2, "p_cI": 40}, times),
        Design(
            "heldout_cI_knockout",
            {"m_lacI": 0, "m_tetR": 0, "m_cI": 0, "p_lacI": 5, "p_tetR": 0, "p_cI": 0}, times,
            overrides={"alpha_cI": 0.0}, held_out=True,
            description="the cI promoter knocked out (only leaky expression): the ring opens and oscillation stops",
        ),
    )
    return System(
        "repressilator", SUITE, model, designs,
        description="Repressilator genetic oscillator (Hill repression, n = 2); proteins observed, mRNAs hidden.",
        source=(
            "Elowitz & Leibler (2000) Nature 403:335-338, Box 1 model; parameter values as in the curated "
            "BioModels entry BIOMD0000000012 (alpha = 216.404, alpha0 = 0.2164, beta = 0.2, n = 2)."
        ),
        observed=("p_lacI", "p_tetR", "p_cI"),
    )


def goodwin_oscillator() -> System:
    """The Goodwin oscillator of a circadian clock gene: a repressor inhibits its own transcription.

        dX/dt = v1 K1^n / (K1^n + Z^n) - v2 X / (K2 + X)     (clock gene mRNA)
        dY/dt = k3 X - v4 Y / (K4 + Y)                       (cytosolic protein)
        dZ/dt = k5 Y - v6 Z / (K6 + Z)                       (nuclear repressor)

    Concentrations in nM, time in h. The mRNA and the nuclear repressor are measured.
    """
    model = Model.from_text(
        """
        dX/dt = v1*K1^n/(K1^n + Z^n) - v2*X/(K2 + X)
        dY/dt = k3*X - v4*Y/(K4 + Y)
        dZ/dt = k5*Y - v6*Z/(K6 + Z)
        v1 in [0.05, 5] log = 0.7    # maximal transcription, nM/h
        K1 in [0.1, 10] log = 1.0    # repression threshold, nM
        n in [1, 6] = 4.0            # Hill coefficient of repression
        v2 in [0.05, 5] log = 0.35   # maximal mRNA degradation, nM/h
        K2 in [0.1, 10] log = 1.0
        k3 in [0.05, 5] log = 0.7    # translation, 1/h
        v4 in [0.05, 5] log = 0.35   # maximal protein degradation, nM/h
        K4 in [0.1, 10] log = 1.0
        k5 in [0.05, 5] log = 0.7    # nuclear import, 1/h
        v6 in [0.05, 5] log = 0.35   # maximal repressor degradation, nM/h
        K6 in [0.1, 10] log = 1.0
        """,
        name="goodwin_oscillator",
    )
    times = _grid(120.0, 41)
    designs = (
        Design("phase_0", {"X": 0.2, "Y": 0.5, "Z": 2.0}, times),
        Design("phase_8h", {"X": 0.09, "Y": 0.35, "Z": 2.35}, times),
        Design("off_cycle", {"X": 0.3, "Y": 0.2, "Z": 1.5}, times),
        Design(
            "heldout_repressor_stabilised", {"X": 0.2, "Y": 0.5, "Z": 2.0}, times,
            overrides={"v6": 0.25}, held_out=True,
            description="a drug slows degradation of the nuclear repressor (v6 from 0.35 to 0.25 nM/h), "
            "as the CRY stabiliser KL001 does; the period lengthens from 23.5 to 26 h",
        ),
    )
    return System(
        "goodwin_oscillator", SUITE, model, designs,
        description="Goodwin negative-feedback circadian oscillator (Hill repression n = 4, Michaelis-Menten "
        "degradation); mRNA and nuclear repressor observed.",
        source=(
            "Goodwin (1965) Adv Enzyme Regul 3:425-438; Michaelis-Menten degradation form and parameter values "
            "of the single-cell oscillator in Gonze, Bernard, Waltermann, Kramer & Herzel (2005) Biophys J "
            "89:120-129 (v1 = 0.7, K1 = 1, n = 4, v2 = v4 = v6 = 0.35, k3 = k5 = 0.7, K2 = K4 = K6 = 1). "
            "The held-out stabiliser is inspired by KL001 (Hirota et al. 2012 Science 337:1094); its "
            "effect size is illustrative."
        ),
        observed=("X", "Z"),
    )


def selkov_glycolysis() -> System:
    """Sel'kov's model of glycolytic oscillations in phosphofructokinase, in dimensionless form.

        dADP/dt = -ADP + a F6P + ADP^2 F6P,    dF6P/dt = b - a F6P - ADP^2 F6P,

    with ADP the product (activator) and F6P the substrate of phosphofructokinase, b the
    substrate supply from glucose.
    """
    model = Model.from_text(
        """
        dADP/dt = -ADP + a*F6P + ADP^2*F6P
        dF6P/dt = b - a*F6P - ADP^2*F6P
        a in [0.001, 1] log = 0.08   # basal (unactivated) PFK rate
        b in [0.05, 5] log = 0.6     # substrate supply
        """,
        name="selkov_glycolysis",
    )
    times = _grid(60.0, 41)
    designs = (
        Design("near_steady_state", {"ADP": 0.5, "F6P": 1.5}, times),
        Design("substrate_rich", {"ADP": 0.2, "F6P": 3.0}, times),
        Design("product_rich", {"ADP": 2.0, "F6P": 0.5}, times),
        Design(
            "heldout_high_supply", {"ADP": 0.5, "F6P": 1.5}, times, overrides={"b": 1.0}, held_out=True,
            description="faster glucose supply (b = 1.0): beyond the Hopf bifurcation, the oscillation dies out",
        ),
    )
    return System(
        "selkov_glycolysis", SUITE, model, designs,
        description="Sel'kov glycolytic oscillator (mass-action autocatalysis, limit cycle; dimensionless).",
        source=(
            "Sel'kov (1968) Eur J Biochem 4:79-86; dimensionless form and values a = 0.08, b = 0.6 from "
            "Strogatz (1994) Nonlinear Dynamics and Chaos (Addison-Wesley), Example 7.3.2."
        ),
    )


# ---------------------------------------------------------------------- signalling
def mapk_cascade() -> System:
    """A three-tier MAPK cascade (Raf -> MEK -> ERK) driven by a stimulus, Michaelis-Menten steps.

        dKKKp/dt = k1 S KKK / (K1 + KKK) - V2 KKKp / (K2 + KKKp),          KKK = KKKtot - KKKp
        dKKpp/dt = k3 KKKp KK / (K3 + KK) - V4 KKpp / (K4 + KKpp),         KK = KKtot - KKpp
        dKpp/dt  = k5 KKpp K / (K5 + K) - V6 Kpp / (K6 + Kpp),             K = Ktot - Kpp

    Concentrations in uM, time in min; S is the receptor stimulus (0-1). Active MEK (KKpp) and
    active ERK (Kpp) are measured (phospho-specific blots); active Raf is hidden.
    """
    model = Model.from_text(
        """
        input S
        dKKKp/dt = k1*S*(KKKtot - KKKp)/(K1 + KKKtot - KKKp) - V2*KKKp/(K2 + KKKp)
        dKKpp/dt = k3*KKKp*(KKtot - KKpp)/(K3 + KKtot - KKpp) - V4*KKpp/(K4 + KKpp)
        dKpp/dt = k5*KKpp*(Ktot - Kpp)/(K5 + Ktot - Kpp) - V6*Kpp/(K6 + Kpp)
        KKKtot in [0.001, 10] log = 0.1   # total MAPKKK (Raf), uM
        KKtot in [0.01, 10] log = 1.2     # total MAPKK (MEK), uM
        Ktot in [0.01, 10] log = 1.2      # total MAPK (ERK), uM
        k1 in [0.01, 10] log = 0.5   # Raf activation by the stimulus, uM/min
        K1 in [0.01, 10] log = 0.3   # uM
        V2 in [0.001, 10] log = 0.15 # Raf inactivation, uM/min
        K2 in [0.01, 10] log = 0.3
        k3 in [0.1, 100] log = 5.0   # MEK activation per active Raf, 1/min
        K3 in [0.01, 10] log = 0.3
        V4 in [0.01, 10] log = 0.3   # MEK phosphatase, uM/min
        K4 in [0.01, 10] log = 0.3
        k5 in [0.1, 100] log = 3.0   # ERK activation per active MEK, 1/min
        K5 in [0.01, 10] log = 0.3
        V6 in [0.01, 10] log = 1.0   # ERK phosphatase (MKP), uM/min
        K6 in [0.01, 10] log = 0.3
        """,
        name="mapk_cascade",
    )
    times = _grid(60.0, 31)
    rest = {"KKKp": 0.0, "KKpp": 0.0, "Kpp": 0.0}
    designs = (
        Design("stimulus_0.1", rest, times, inputs=(_step("S", 0.1),)),
        Design("stimulus_0.3", rest, times, inputs=(_step("S", 0.3),)),
        Design("stimulus_1", rest, times, inputs=(_step("S", 1.0),)),
        Design(
            "heldout_mek_inhibitor", rest, times, inputs=(_step("S", 1.0),), overrides={"k5": 0.3}, held_out=True,
            description="full stimulus with a MEK inhibitor that cuts MEK's catalytic activity on ERK tenfold",
        ),
    )
    return System(
        "mapk_cascade", SUITE, model, designs,
        description="Three-tier MAPK signalling cascade with a stimulus input (Michaelis-Menten kinetics); "
        "active MEK and ERK observed.",
        source=(
            "Huang & Ferrell (1996) PNAS 93:10078-10083, reduced to one phosphorylation step per tier with "
            "Michaelis-Menten kinetics as in Kholodenko (2000) Eur J Biochem 267:1583-1588; MEK and ERK totals "
            "(1.2 uM) from Huang & Ferrell, rate constants illustrative."
        ),
        observed=("KKpp", "Kpp"),
    )


# ---------------------------------------------------------------------- epidemics
def sir_epidemic() -> System:
    """The SIR epidemic: susceptible, infectious and removed pupils of a closed boarding school.

        dS/dt = -beta S I / N,    dI/dt = beta S I / N - gamma I,    dR/dt = gamma I,   N = S + I + R.

    Time in days. Only the number of pupils in bed (I) is recorded.
    """
    model = Model.from_text(
        """
        N = S + I + R
        dS/dt = -beta*S*I/N
        dI/dt = beta*S*I/N - gamma*I
        dR/dt = gamma*I
        beta in [0.1, 5] log = 1.73    # transmission rate, 1/day
        gamma in [0.05, 2] log = 0.54  # recovery rate, 1/day (1.85 days in bed)
        """,
        name="sir_epidemic",
    )
    times = _grid(14.0, 29)
    designs = (
        Design("one_index_case", {"S": 762.0, "I": 1.0, "R": 0.0}, times),
        Design("three_cases", {"S": 760.0, "I": 3.0, "R": 0.0}, times),
        Design("ten_cases", {"S": 753.0, "I": 10.0, "R": 0.0}, times),
        Design(
            "heldout_reduced_contacts", {"S": 760.0, "I": 3.0, "R": 0.0}, times, overrides={"beta": 1.0},
            held_out=True,
            description="cancelled classes and isolation cut transmission from 1.73 to 1.0 per day",
        ),
    )
    return System(
        "sir_epidemic", SUITE, model, designs,
        description="SIR epidemic (mass action), influenza in a boarding school of 763 pupils; I observed.",
        source=(
            "Kermack & McKendrick (1927) Proc R Soc Lond A 115:700-721; 1978 boarding-school influenza "
            "outbreak (BMJ 1978;1:587); beta = 1.73/day, gamma = 0.54/day from Grinsztajn, Semenova, Margossian "
            "& Riou (2021) Stat Med 40:6209-6234."
        ),
        observed=("I",),
    )


def seir_epidemic() -> System:
    """The SEIR epidemic with a latent class and a contact-reducing intervention c(t) in [0, 1].

        force = beta (1 - c) I / N
        dS/dt = -force S,   dE/dt = force S - sigma E,   dI/dt = sigma E - gamma I,   dR/dt = gamma I.

    A population of one million (counts in thousands), time in days. Infectious and removed
    are reported; susceptible and exposed are hidden.
    """
    model = Model.from_text(
        """
        input c
        N = S + E + I + R
        force = beta*(1 - c)*I/N
        dS/dt = -force*S
        dE/dt = force*S - sigma*E
        dI/dt = sigma*E - gamma*I
        dR/dt = gamma*I
        beta in [0.05, 3] log = 0.44     # transmission, 1/day (R0 = beta/gamma = 2.2)
        sigma in [0.05, 2] log = 0.1923  # 1/latent period (5.2 days), 1/day
        gamma in [0.02, 2] log = 0.2     # 1/infectious period (5 days), 1/day
        """,
        name="seir_epidemic",
    )
    times = _grid(245.0, 36)
    seed = {"S": 999.99, "E": 0.0, "I": 0.01, "R": 0.0}
    designs = (
        Design("unmitigated", seed, times),
        Design("large_seed", {"S": 999.8, "E": 0.1, "I": 0.1, "R": 0.0}, times),
        Design("distancing_from_day_40", seed, times, inputs=(_step("c", 0.3, 40.0),)),
        Design(
            "heldout_lockdown", seed, times, inputs=(_pulse("c", 0.6, 30.0, 90.0),), held_out=True,
            description="a lockdown cutting contacts by 60% from day 30 to day 90, then lifted (a second wave)",
        ),
    )
    return System(
        "seir_epidemic", SUITE, model, designs,
        description="SEIR epidemic with a contact-reduction input (COVID-19-like, thousands of people); "
        "I and R observed.",
        source=(
            "Kermack & McKendrick (1927) Proc R Soc Lond A 115:700-721 with a latent class as in Anderson & May "
            "(1991) Infectious Diseases of Humans (Oxford UP); mean incubation 5.2 days and R0 = 2.2 from "
            "Li et al. (2020) N Engl J Med 382:1199-1207; infectious period of 5 days and the interventions "
            "illustrative."
        ),
        observed=("I", "R"),
    )


# ---------------------------------------------------------------------- pharmacology
def pk_oral_one_compartment() -> System:
    """One-compartment pharmacokinetics with first-order oral absorption (theophylline).

        d gut/dt = -ka gut,    d central/dt = ka gut - ke central,    C = central / V.

    Amounts in mg/kg, concentration in mg/L, time in h; oral doses go into ``gut``. Only the
    plasma concentration is measured.
    """
    model = Model.from_text(
        """
        dgut/dt = -ka*gut
        dcentral/dt = ka*gut - ke*central
        observable C = central/V
        ka in [0.1, 10] log = 1.57     # absorption, 1/h
        ke in [0.01, 1] log = 0.088    # elimination, 1/h (half-life 7.9 h)
        V in [0.05, 5] log = 0.455     # volume, L/kg (CL/ke = 0.040/0.088)
        """,
        name="pk_oral_one_compartment",
    )
    single = np.array([0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 24])
    repeated = np.array([0.5, 1, 2, 3, 4, 6, 8, 11.9, 12.5, 13, 14, 16, 20, 23.9, 24.5, 25, 26, 28, 32,
                         35.9, 36.5, 38, 42, 48])
    empty = {"gut": 0.0, "central": 0.0}
    designs = (
        Design("dose_3mg_per_kg", empty, single, doses=(Bolus(0.0, "gut", 3.0),)),
        Design("dose_4.5mg_per_kg", empty, single, doses=(Bolus(0.0, "gut", 4.5),)),
        Design("dose_6mg_per_kg", empty, single, doses=(Bolus(0.0, "gut", 6.0),)),
        Design(
            "heldout_every_12h", empty, repeated, doses=tuple(Bolus(t, "gut", 4.0) for t in (0.0, 12.0, 24.0, 36.0)),
            held_out=True,
            description="repeated dosing, 4 mg/kg every 12 h for four doses (accumulation towards steady state)",
        ),
    )
    return System(
        "pk_oral_one_compartment", SUITE, model, designs,
        description="One-compartment PK with oral absorption (theophylline, per kg); plasma concentration observed.",
        source=(
            "One-compartment model with first-order absorption (Gibaldi & Perrier 1982, Pharmacokinetics, 2nd "
            "ed., Marcel Dekker). Theophylline estimates of Pinheiro & Bates (2000) Mixed-Effects Models in S "
            "and S-PLUS (Springer) for the Boeckmann, Sheiner & Beal (1994) NONMEM data: "
            "ka = 1.57/h, ke = 0.088/h, CL = 0.040 L/h/kg (V = CL/ke = 0.455 L/kg)."
        ),
        observed=("C",),
    )


def pk_iv_two_compartment() -> System:
    """Two-compartment (mammillary) pharmacokinetics after intravenous doses.

        d central/dt = -(CL/V1) central - (Q/V1) central + (Q/V2) peripheral
        d peripheral/dt = (Q/V1) central - (Q/V2) peripheral,        C = central / V1.

    Amounts in mg, concentration in mg/L, time in h. Only the plasma concentration is measured.
    """
    model = Model.from_text(
        """
        dcentral/dt = -(CL/V1)*central - (Q/V1)*central + (Q/V2)*peripheral
        dperipheral/dt = (Q/V1)*central - (Q/V2)*peripheral
        observable C = central/V1
        CL in [0.1, 100] log = 5.0     # clearance, L/h
        V1 in [1, 200] log = 10.0      # central volume, L
        Q in [0.1, 100] log = 8.0      # inter-compartmental clearance, L/h
        V2 in [1, 500] log = 25.0      # peripheral volume, L
        """,
        name="pk_iv_two_compartment",
    )
    times = np.array([0.083, 0.167, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 30])
    empty = {"central": 0.0, "peripheral": 0.0}
    designs = (
        Design("bolus_100mg", empty, times, doses=(Bolus(0.0, "central", 100.0),)),
        Design("bolus_500mg", empty, times, doses=(Bolus(0.0, "central", 500.0),)),
        Design("two_boluses_250mg", empty, times, doses=(Bolus(0.0, "central", 250.0), Bolus(12.0, "central", 250.0))),
        Design(
            "heldout_infusion", empty, times, inputs=(Input.infusion("central", 0.0, 2.0, 250.0),), held_out=True,
            description="the same 500 mg given as a 2 h constant-rate infusion instead of a bolus",
        ),
    )
    return System(
        "pk_iv_two_compartment", SUITE, model, designs,
        description="Two-compartment PK with IV bolus and repeated dosing; plasma concentration observed.",
        source=(
            "Two-compartment mammillary model (Gibaldi & Perrier 1982, Pharmacokinetics; Rowland & Tozer 2011, "
            "Clinical Pharmacokinetics and Pharmacodynamics, 4th ed.); parameter values illustrative of a "
            "small-molecule drug (half-lives 0.46 h and 6.6 h)."
        ),
        observed=("C",),
    )


def pkpd_effect_compartment() -> System:
    """PK/PD: an IV drug whose effect follows a sigmoid Emax model through an effect compartment.

        d central/dt = -ke central,    dCe/dt = ke0 (central/V - Ce),
        effect = E0 + Emax Ce^h / (EC50^h + Ce^h).

    Amounts in mg, concentrations in mg/L, time in h; the effect is a score (0-100). Plasma
    concentration and effect are measured; the effect-site concentration is hidden.
    """
    model = Model.from_text(
        """
        dcentral/dt = -ke*central
        dCe/dt = ke0*(central/V - Ce)
        observable C = central/V
        observable effect = E0 + Emax*Ce^h/(EC50^h + Ce^h)
        ke in [0.01, 5] log = 0.3      # elimination, 1/h
        V in [1, 200] log = 20.0       # volume, L
        ke0 in [0.05, 20] log = 0.8    # effect-site equilibration, 1/h
        E0 in [0, 50] = 5.0            # baseline effect
        Emax in [1, 200] = 90.0        # maximal drug effect
        EC50 in [0.1, 50] log = 2.0    # effect-site concentration at half effect, mg/L
        h in [0.5, 4] = 2.0            # Hill coefficient
        """,
        name="pkpd_effect_compartment",
    )
    times = np.array([0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 18, 20, 22, 24])
    empty = {"central": 0.0, "Ce": 0.0}
    designs = (
        Design("bolus_20mg", empty, times, doses=(Bolus(0.0, "central", 20.0),)),
        Design("bolus_50mg", empty, times, doses=(Bolus(0.0, "central", 50.0),)),
        Design("bolus_150mg", empty, times, doses=(Bolus(0.0, "central", 150.0),)),
        Design(
            "heldout_three_doses", empty, times,
            doses=tuple(Bolus(t, "central", 40.0) for t in (0.0, 6.0, 12.0)), held_out=True,
            description="40 mg every 6 h, three doses (effect accumulates and lags the concentration)",
        ),
    )
    return System(
        "pkpd_effect_compartment", SUITE, model, designs,
        description="PK/PD: one-compartment IV PK, effect compartment and sigmoid Emax; C and effect observed.",
        source=(
            "Effect-compartment (link) model of Sheiner, Stanski, Vozeh, Miller & Ham (1979) Clin Pharmacol "
            "Ther 25:358-371 with the sigmoid Emax model of Holford & Sheiner (1981) Clin Pharmacokinet "
            "6:429-453; parameter values illustrative."
        ),
        observed=("C", "effect"),
    )


def indirect_response() -> System:
    """Indirect response model I: an oral drug inhibits the production of a response variable.

        d gut/dt = -ka gut,    d central/dt = ka gut - ke central,    C = central / V,
        dR/dt = kin (1 - Imax C / (IC50 + C)) - kout R,               R(0) = kin / kout.

    Amounts in mg, concentration in mg/L, response in % of baseline units, time in h.
    """
    model = Model.from_text(
        """
        dgut/dt = -ka*gut
        dcentral/dt = ka*gut - ke*central
        dR/dt = kin*(1 - Imax*(central/V)/(IC50 + central/V)) - kout*R
        R(0) = kin/kout
        observable C = central/V
        observable R = R
        ka in [0.1, 10] log = 1.0      # absorption, 1/h
        ke in [0.01, 2] log = 0.2      # elimination, 1/h
        V in [1, 500] log = 50.0       # volume, L
        kin in [0.1, 100] log = 10.0   # zero-order production of the response, units/h
        kout in [0.01, 2] log = 0.1    # first-order loss of the response, 1/h
        Imax in [0, 1] = 0.9           # maximal inhibition of production
        IC50 in [0.01, 10] log = 0.5   # concentration at half-maximal inhibition, mg/L
        """,
        name="indirect_response",
    )
    times = _grid(72.0, 25)[1:]
    repeated = _grid(96.0, 25)[1:]
    baseline = {"gut": 0.0, "central": 0.0, "R": 100.0}
    designs = (
        Design("dose_25mg", baseline, times, doses=(Bolus(0.0, "gut", 25.0),)),
        Design("dose_50mg", baseline, times, doses=(Bolus(0.0, "gut", 50.0),)),
        Design("dose_200mg", baseline, times, doses=(Bolus(0.0, "gut", 200.0),)),
        Design(
            "heldout_daily_dosing", baseline, repeated, doses=tuple(Bolus(t, "gut", 50.0) for t in (0.0, 24.0, 48.0)),
            held_out=True,
            description="50 mg once daily for three days (the response has no time to recover between doses)",
        ),
    )
    return System(
        "indirect_response", SUITE, model, designs,
        description="PK/PD indirect response model I (drug inhibits production of the response); C and R observed.",
        source=(
            "Dayneka, Garg & Jusko (1993) J Pharmacokinet Biopharm 21:457-478, model I, driven by a "
            "one-compartment oral PK model; parameter values illustrative (baseline kin/kout = 100)."
        ),
        observed=("C", "R"),
    )


# ---------------------------------------------------------------------- tumours
def _logistic(t: float, r: float, K: float, V0: float) -> float:
    """Closed-form logistic growth V(t) = K / (1 + (K/V0 - 1) exp(-r t))."""
    return K / (1.0 + (K / V0 - 1.0) * math.exp(-r * t))


def tumour_logistic() -> System:
    """Logistic tumour growth towards a carrying capacity, with a surgical debulking held out.

        dV/dt = r V (1 - V / K).

    Tumour volume in mm^3, time in days.
    """
    r, K = 0.25, 2500.0
    model = Model.from_text(
        f"""
        dV/dt = r*V*(1 - V/K)
        r in [0.01, 2] log = {r}      # intrinsic growth rate, 1/day
        K in [100, 1e5] log = {K}     # carrying capacity, mm^3
        """,
        name="tumour_logistic",
    )
    times = _grid(40.0, 27)
    resection_day, removed = 15.0, 0.8
    removed_volume = removed * _logistic(resection_day, r, K, 100.0)
    designs = (
        Design("volume_50", {"V": 50.0}, times),
        Design("volume_100", {"V": 100.0}, times),
        Design("volume_250", {"V": 250.0}, times),
        Design(
            "heldout_debulking", {"V": 100.0}, times, doses=(Bolus(resection_day, "V", -removed_volume),),
            held_out=True,
            description="surgical debulking on day 15 removes 80% of the tumour, which then regrows",
        ),
    )
    return System(
        "tumour_logistic", SUITE, model, designs,
        description="Logistic tumour growth (mouse xenograft scale, mm^3 and days); debulking held out.",
        source=(
            "Logistic growth (Verhulst 1838) as a tumour growth law, compared with others on mouse tumour data "
            "by Benzekry et al. (2014) PLoS Comput Biol 10:e1003800; parameter values illustrative."
        ),
    )


def tumour_gompertz_chemotherapy() -> System:
    """Gompertz tumour growth with log-kill by a cytotoxic drug given as bolus doses.

        dV/dt = a V log(K / V) - kkill D V,       dD/dt = -kel D.

    Tumour volume in mm^3, drug in mg/kg, time in days. Only the tumour volume (calipers) is measured.
    """
    model = Model.from_text(
        """
        dV/dt = a*V*log(K/V) - kkill*D*V
        dD/dt = -kel*D
        a in [0.005, 1] log = 0.08      # Gompertz deceleration rate, 1/day
        K in [100, 1e5] log = 3000.0    # plateau volume, mm^3
        kkill in [0.001, 3] log = 0.3   # log-kill per unit drug, 1/(day mg/kg)
        kel in [0.1, 10] log = 1.5      # drug elimination, 1/day
        """,
        name="tumour_gompertz_chemotherapy",
    )
    times = _grid(39.0, 27)
    untreated = {"V": 50.0, "D": 0.0}
    designs = (
        Design("untreated_50", untreated, times),
        Design("untreated_150", {"V": 150.0, "D": 0.0}, times),
        Design("single_dose_day_7", untreated, times, doses=(Bolus(7.0, "D", 10.0),)),
        Design(
            "heldout_three_doses", untreated, times, doses=tuple(Bolus(t, "D", 10.0) for t in (7.0, 10.0, 13.0)),
            held_out=True,
            description="three doses of 10 mg/kg every 3 days from day 7 (q3d x 3)",
        ),
    )
    return System(
        "tumour_gompertz_chemotherapy", SUITE, model, designs,
        description="Gompertz tumour growth with log-kill chemotherapy (bolus doses, hidden drug); volume observed.",
        source=(
            "Gompertz growth of tumours (Laird 1964 Br J Cancer 18:490-502) with the log-kill hypothesis "
            "(Skipper, Schabel & Wilcox 1964 Cancer Chemother Rep 35:1-111); parameter values illustrative of "
            "the ranges fitted by Benzekry et al. (2014) PLoS Comput Biol 10:e1003800."
        ),
        observed=("V",),
    )


def tumour_immune() -> System:
    """Tumour-immune interaction with adoptive immunotherapy (Kuznetsov model, dimensionless).

        dE/dt = sigma + rho E T / (eta + T) - mu E T - delta E,     dT/dt = alpha T (1 - beta T) - E T,

    E the effector (cytotoxic) cells and T the tumour cells, both in units of 1e6 cells. An
    infusion into E is an adoptive transfer of effector cells.
    """
    model = Model.from_text(
        """
        dE/dt = sigma + rho*E*T/(eta + T) - mu*E*T - delta*E
        dT/dt = alpha*T*(1 - beta*T) - E*T
        sigma in [0.01, 1] log = 0.1181    # influx of effector cells
        rho in [0.1, 5] log = 1.131        # maximal tumour-stimulated recruitment
        eta in [1, 100] log = 20.19        # tumour load for half-maximal recruitment
        mu in [1e-4, 0.1] log = 0.00311    # inactivation of effectors by tumour cells
        delta in [0.05, 2] log = 0.3743    # death of effector cells
        alpha in [0.1, 5] log = 1.636      # tumour growth rate
        beta in [1e-4, 0.1] log = 0.002    # 1/(tumour carrying capacity)
        """,
        name="tumour_immune",
    )
    times = _grid(60.0, 31)
    designs = (
        Design("small_tumour", {"E": 0.32, "T": 10.0}, times),
        Design("large_tumour", {"E": 0.32, "T": 300.0}, times),
        Design(
            "effector_infusion", {"E": 0.32, "T": 300.0}, times, inputs=(Input.infusion("E", 0.0, 10.0, 0.5),),
        ),
        Design(
            "heldout_transfer_boluses", {"E": 0.32, "T": 300.0}, times,
            doses=tuple(Bolus(t, "E", 2.0) for t in (0.0, 5.0, 10.0)), held_out=True,
            description="adoptive transfer as three boluses of effector cells (t = 0, 5, 10) instead of an infusion",
        ),
    )
    return System(
        "tumour_immune", SUITE, model, designs,
        description="Tumour-immune model with adoptive cell therapy (dimensionless; effector infusion / doses).",
        source=(
            "Kuznetsov, Makalkin, Taylor & Perelson (1994) Bull Math Biol 56:295-321: dimensionless model and "
            "parameter values for BCL1 lymphoma in chimeric mice (sigma = 0.1181, rho = 1.131, eta = 20.19, "
            "mu = 0.00311, delta = 0.3743, alpha = 1.636, beta = 0.002); adoptive transfer as a source of "
            "effector cells as in Kirschner & Panetta (1998) J Math Biol 37:235-252; therapy doses illustrative."
        ),
    )


# ---------------------------------------------------------------------- ecology
def lotka_volterra() -> System:
    """Lotka-Volterra predator-prey dynamics of snowshoe hares and Canadian lynx.

        dhare/dt = alpha hare - beta hare lynx,      dlynx/dt = -gamma lynx + delta hare lynx.

    Thousands of pelts, time in years.
    """
    model = Model.from_text(
        """
        dhare/dt = alpha*hare - beta*hare*lynx
        dlynx/dt = -gamma*lynx + delta*hare*lynx
        alpha in [0.05, 5] log = 0.55    # hare birth rate, 1/year
        beta in [0.001, 1] log = 0.028   # predation, 1/(year thousand lynx)
        gamma in [0.05, 5] log = 0.80    # lynx death rate, 1/year
        delta in [0.001, 1] log = 0.024  # lynx growth per hare eaten, 1/(year thousand hares)
        """,
        name="lotka_volterra",
    )
    times = _grid(20.0, 41)
    designs = (
        Design("year_1900", {"hare": 33.9, "lynx": 5.9}, times),
        Design("many_lynx", {"hare": 20.0, "lynx": 30.0}, times),
        Design("many_hares", {"hare": 60.0, "lynx": 4.0}, times),
        Design(
            "heldout_lynx_release", {"hare": 33.9, "lynx": 5.9}, times, doses=(Bolus(6.0, "lynx", 20.0),),
            held_out=True,
            description="20 thousand lynx released in year 6",
        ),
    )
    return System(
        "lotka_volterra", SUITE, model, designs,
        description="Lotka-Volterra predator-prey oscillation (mass action), Hudson Bay hare and lynx.",
        source=(
            "Lotka (1925) Elements of Physical Biology; Volterra (1926) Nature 118:558-560. Values are the "
            "posterior means of Carpenter (2018) 'Predator-prey population dynamics: the Lotka-Volterra model "
            "in Stan' (Stan case study) for the Hudson's Bay Company pelts 1900-1920."
        ),
    )


def competition() -> System:
    """Lotka-Volterra competition between two yeasts sharing a medium.

        dN1/dt = r1 N1 (K1 - N1 - a12 N2) / K1,     dN2/dt = r2 N2 (K2 - N2 - a21 N1) / K2,

    N1 Saccharomyces cerevisiae and N2 Schizosaccharomyces kephir, in Gause's volume units of
    yeast; time in hours.
    """
    model = Model.from_text(
        """
        dN1/dt = r1*N1*(K1 - N1 - a12*N2)/K1
        dN2/dt = r2*N2*(K2 - N2 - a21*N1)/K2
        r1 in [0.01, 2] log = 0.21827   # growth rate of Saccharomyces, 1/h
        r2 in [0.005, 2] log = 0.06069  # growth rate of Schizosaccharomyces, 1/h
        K1 in [1, 100] log = 13.0       # carrying capacity of Saccharomyces
        K2 in [1, 100] log = 5.8        # carrying capacity of Schizosaccharomyces
        a12 in [0, 10] = 3.15           # effect of Schizosaccharomyces on Saccharomyces
        a21 in [0, 10] = 0.439          # effect of Saccharomyces on Schizosaccharomyces
        """,
        name="competition",
    )
    times = _grid(150.0, 31)
    designs = (
        Design("equal_inocula", {"N1": 0.45, "N2": 0.45}, times),
        Design("saccharomyces_first", {"N1": 1.0, "N2": 0.2}, times),
        Design("schizosaccharomyces_first", {"N1": 0.2, "N2": 1.0}, times),
        Design(
            "heldout_late_invasion", {"N1": 0.45, "N2": 0.0}, times, doses=(Bolus(40.0, "N2", 0.5),),
            held_out=True,
            description="Schizosaccharomyces inoculated 40 h into a Saccharomyces monoculture",
        ),
    )
    return System(
        "competition", SUITE, model, designs,
        description="Two-species Lotka-Volterra competition of yeasts (Gause); both species observed.",
        source=(
            "Gause (1932) J Exp Biol 9:389-402 and Gause (1934) The Struggle for Existence (Williams & Wilkins), "
            "ch. V: yeast parameters r1 = 0.21827/h, K1 = 13.0, r2 = 0.06069/h, K2 = 5.8, alpha = 3.15, "
            "beta = 0.439 as commonly quoted from Gause's mono- and mixed-culture experiments (approximate)."
        ),
    )


def chemostat() -> System:
    """Bacterial growth on a limiting substrate in a chemostat (Monod kinetics).

        mu = mu_max S / (Ks + S),    dS/dt = D (Sin - S) - mu X / Y,    dX/dt = (mu - D) X,

    S glucose and X biomass in g/L, D the dilution rate (an input, 1/h), time in h.
    """
    model = Model.from_text(
        """
        input D
        mu = mu_max*S/(Ks + S)
        dS/dt = D*(Sin - S) - mu*X/Y
        dX/dt = (mu - D)*X
        mu_max in [0.05, 3] log = 0.8   # maximal specific growth rate, 1/h
        Ks in [0.001, 5] log = 0.1      # half-saturation constant, g/L
        Y in [0.05, 1] = 0.5            # biomass yield, g biomass / g glucose
        Sin in [0.1, 50] log = 5.0      # feed glucose, g/L
        """,
        name="chemostat",
    )
    times = _grid(60.0, 31)
    inoculum = {"S": 5.0, "X": 0.05}
    designs = (
        Design("dilution_0.1", inoculum, times, inputs=(_step("D", 0.1),)),
        Design("dilution_0.3", inoculum, times, inputs=(_step("D", 0.3),)),
        Design("dilution_0.5", inoculum, times, inputs=(_step("D", 0.5),)),
        Design(
            "heldout_washout", inoculum, times, inputs=(Input("D", (0.0, 24.0), (0.3, 0.85)),), held_out=True,
            description="the dilution rate raised from 0.3 to 0.85/h at 24 h, above the maximal growth rate: washout",
        ),
    )
    return System(
        "chemostat", SUITE, model, designs,
        description="Chemostat with Monod growth and a dilution-rate input (E. coli on glucose scale).",
        source=(
            "Monod (1949) Annu Rev Microbiol 3:371-394; Monod (1950) Ann Inst Pasteur 79:390-410; Novick & "
            "Szilard (1950) Science 112:715-716. Parameter values illustrative of E. coli on glucose."
        ),
    )


# ---------------------------------------------------------------------- within-host virus dynamics
def influenza_target_cell() -> System:
    """Target-cell-limited influenza infection with an antiviral started during infection.

        dT/dt = -beta T V,    dI/dt = beta T V - delta I,    dV/dt = (1 - eps) p I - c V,

    T uninfected epithelial cells, I infected cells, V virus titre (TCID50/ml), time in days;
    eps(t) the antiviral efficacy in blocking virion release (an input, 0 untreated). Virus
    titre and target cells are measured.
    """
    model = Model.from_text(
        """
        input eps
        dT/dt = -beta*T*V
        dI/dt = beta*T*V - delta*I
        dV/dt = (1 - eps)*p*I - c*V
        beta in [1e-7, 1e-3] log = 2.7e-5   # infection rate, 1/((TCID50/ml) day)
        delta in [0.5, 20] log = 4.0        # death of infected cells, 1/day
        p in [1e-4, 1] log = 0.012          # virion production, (TCID50/ml)/(cell day)
        c in [0.5, 20] log = 3.0            # virion clearance, 1/day
        """,
        name="influenza_target_cell",
    )
    times = _grid(8.0, 25)
    designs = (
        Design("inoculum_0.1", {"T": 4e8, "I": 0.0, "V": 0.1}, times),
        Design("inoculum_1", {"T": 4e8, "I": 0.0, "V": 1.0}, times),
        Design("inoculum_10", {"T": 4e8, "I": 0.0, "V": 10.0}, times),
        Design(
            "heldout_antiviral_28h", {"T": 4e8, "I": 0.0, "V": 0.1}, times, inputs=(_step("eps", 0.95, 28.0 / 24.0),),
            held_out=True,
            description="a neuraminidase inhibitor blocking 95% of virion release, started 28 h after inoculation",
        ),
    )
    return System(
        "influenza_target_cell", SUITE, model, designs,
        description="Within-host influenza A, target-cell-limited model with antiviral efficacy input; "
        "V and T observed.",
        source=(
            "Baccam, Beauchemin, Macken, Hayden & Perelson (2006) J Virol 80:7590-7599, target-cell-limited model "
            "fitted to nasal-wash titres of volunteers infected with influenza A/Texas/91 (H1N1): beta = 2.7e-5, "
            "p = 1.2e-2, c = 3.0/day, delta = 4.0/day, T0 = 4e8 cells. Antiviral efficacy on virion release as "
            "in Beauchemin & Handel (2011) BMC Public Health 11(Suppl 1):S7; start 28 h after inoculation as in the "
            "oseltamivir challenge study of Hayden et al. (1999) JAMA 282:1240-1246; the 95% efficacy is illustrative."
        ),
        observed=("V", "T"),
    )


def hiv_therapy() -> System:
    """HIV infection of CD4+ T cells with target-cell supply, and reverse-transcriptase inhibition.

        dT/dt = lambda - d T - (1 - eps) k T V,    dI/dt = (1 - eps) k T V - delta I,    dV/dt = p I - c V,

    cells and virions per ml, time in days; eps the efficacy of a reverse-transcriptase
    inhibitor (0 untreated). Viral load and CD4+ count are measured. The efficacy is a property
    of the treatment, known to be 0 in the untreated training experiments: declared ``fixed``, so
    that calibration does not estimate it (untreated data only see (1 - eps) k, and an estimated
    eps would smear k along that ridge and bias the forecast of the treated experiment).
    """
    model = Model.from_text(
        """
        dT/dt = lambda - d*T - (1 - eps)*k*T*V
        dI/dt = (1 - eps)*k*T*V - delta*I
        dV/dt = p*I - c*V
        lambda in [100, 1e6] log = 1e4   # supply of CD4+ T cells, cells/(ml day)
        d in [0.001, 0.1] log = 0.01     # death of uninfected cells, 1/day
        k in [1e-10, 1e-5] log = 7.5e-8  # infection rate, ml/(virion day)
        delta in [0.05, 5] log = 0.49    # death of infected cells, 1/day
        p in [1, 1e5] log = 100.0        # virion production, virions/(cell day)
        c in [0.5, 50] log = 3.07        # virion clearance, 1/day
        eps in [0, 1] = 0.0 fixed        # reverse-transcriptase inhibitor efficacy: 0 untreated, known
        """,
        name="hiv_therapy",
    )
    # The untreated set point (R0 = lambda k p / (d delta c) = 4.99): T* = delta c / (k p),
    # I* = (lambda - d T*) / delta, V* = p I* / c.
    theta = {p.name: p.value for p in model.parameters}
    T_star = theta["delta"] * theta["c"] / (theta["k"] * theta["p"])
    I_star = (theta["lambda"] - theta["d"] * T_star) / theta["delta"]
    set_point = {"T": T_star, "I": I_star, "V": theta["p"] * I_star / theta["c"]}
    times = _grid(120.0, 31)
    healthy = 1e6
    designs = (
        Design("inoculum_1e-3", {"T": healthy, "I": 0.0, "V": 1e-3}, times),
        Design("inoculum_1e-2", {"T": healthy, "I": 0.0, "V": 1e-2}, times),
        Design("inoculum_1", {"T": healthy, "I": 0.0, "V": 1.0}, times),
        Design(
            "heldout_rt_inhibitor", set_point, _grid(30.0, 31), overrides={"eps": 0.9}, held_out=True,
            description="a reverse-transcriptase inhibitor (90% efficacy) started at the chronic set point: "
            "the viral load falls a thousandfold in a month and CD4+ cells recover",
        ),
    )
    return System(
        "hiv_therapy", SUITE, model, designs,
        description="Within-host HIV (target-cell supply) with reverse-transcriptase inhibitor therapy; "
        "V and T observed.",
        source=(
            "Perelson, Neumann, Markowitz, Leonard & Ho (1996) Science 271:1582-1586 (c = 3.07/day, "
            "delta = 0.49/day); model with target-cell supply and drug efficacy as in Perelson & Nelson (1999) "
            "SIAM Rev 41:3-44; lambda, d, k, p illustrative (R0 = 5, set point ~5e5 virions/ml)."
        ),
        observed=("V", "T"),
    )


# ---------------------------------------------------------------------- physiology
def glucose_minimal_model() -> System:
    """Bergman's minimal model of glucose disappearance under a piecewise-constant insulin input.

        dG/dt = -(SG + X) G + SG Gb,       dX/dt = -p2 X + p3 Ins,

    G plasma glucose (mg/dL), X remote insulin action (1/min), Ins plasma insulin above basal
    (uU/mL, an input); time in min. Only glucose is measured (frequently sampled IVGTT times).
    """
    model = Model.from_text(
        """
        input Ins
        dG/dt = -(SG + X)*G + SG*Gb
        dX/dt = -p2*X + p3*Ins
        SG in [0.001, 0.1] log = 0.025   # glucose effectiveness, 1/min
        Gb in [50, 150] = 90.0           # basal glucose, mg/dL
        p2 in [0.001, 0.2] log = 0.025   # decay of remote insulin action, 1/min
        p3 in [1e-7, 1e-3] log = 1.3e-5  # insulin action gain, 1/min^2 per uU/mL (SI = p3/p2 = 5.2e-4)
        """,
        name="glucose_minimal_model",
    )
    times = np.array([2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 19, 22, 25, 30, 40, 50, 60, 70, 80, 90, 100, 120, 140,
                      160, 180], dtype=float)
    ivgtt = {"G": 280.0, "X": 0.0}
    designs = (
        Design("no_insulin", ivgtt, times, inputs=(_step("Ins", 0.0),)),
        Design("insulin_10", ivgtt, times, inputs=(_step("Ins", 10.0),)),
        Design("insulin_25", ivgtt, times, inputs=(_step("Ins", 25.0),)),
        Design(
            "heldout_insulin_infusion", ivgtt, times, inputs=(_pulse("Ins", 40.0, 20.0, 80.0),), held_out=True,
            description="insulin raised by 40 uU/mL from 20 to 80 min only (an insulin-modified IVGTT)",
        ),
    )
    return System(
        "glucose_minimal_model", SUITE, model, designs,
        description="Bergman minimal model of glucose-insulin (IVGTT, insulin as input); glucose observed.",
        source=(
            "Bergman, Ider, Bowden & Cobelli (1979) Am J Physiol 236:E667-E677; parameter values typical of "
            "normal subjects (SG ~ 0.025/min, p2 ~ 0.025/min, SI = p3/p2 ~ 5e-4 per uU/mL/min; Bergman 1989 "
            "Diabetes 38:1512-1527), illustrative."
        ),
        observed=("G",),
    )


# ---------------------------------------------------------------------- registry
_BUILDERS: tuple[Callable[[], System], ...] = (
    reversible_binding,
    michaelis_menten,
    hill_induction,
    toggle_switch,
    repressilator,
    goodwin_oscillator,
    selkov_glycolysis,
    mapk_cascade,
    sir_epidemic,
    seir_epidemic,
    pk_oral_one_compartment,
    pk_iv_two_compartment,
    pkpd_effect_compartment,
    indirect_response,
    tumour_logistic,
    tumour_gompertz_chemotherapy,
    tumour_immune,
    lotka_volterra,
    competition,
    chemostat,
    influenza_target_cell,
    hiv_therapy,
    glucose_minimal_model,
)

#: The kinds of biology each system exercises (system name -> categories).
CATEGORIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "reversible_binding": ("mass_action",),
        "michaelis_menten": ("michaelis_menten",),
        "hill_induction": ("hill_activation", "gene_regulation"),
        "toggle_switch": ("hill_repression", "gene_regulation", "bistability"),
        "repressilator": ("hill_repression", "gene_regulation", "oscillator"),
        "goodwin_oscillator": ("hill_repression", "michaelis_menten", "oscillator"),
        "selkov_glycolysis": ("mass_action", "oscillator", "metabolism"),
        "mapk_cascade": ("signalling_cascade", "michaelis_menten"),
        "sir_epidemic": ("epidemic", "mass_action"),
        "seir_epidemic": ("epidemic", "mass_action"),
        "pk_oral_one_compartment": ("pharmacokinetics", "oral_absorption", "repeated_dosing"),
        "pk_iv_two_compartment": ("pharmacokinetics", "iv_bolus", "repeated_dosing", "infusion"),
        "pkpd_effect_compartment": ("pharmacokinetics", "pkpd", "emax", "iv_bolus", "repeated_dosing"),
        "indirect_response": ("pharmacokinetics", "pkpd", "indirect_response", "oral_absorption", "repeated_dosing"),
        "tumour_logistic": ("tumour_growth", "logistic"),
        "tumour_gompertz_chemotherapy": ("tumour_growth", "gompertz", "therapy"),
        "tumour_immune": ("tumour_growth", "tumour_immune", "therapy", "infusion"),
        "lotka_volterra": ("ecology", "predator_prey", "oscillator", "mass_action"),
        "competition": ("ecology", "competition"),
        "chemostat": ("ecology", "chemostat", "monod"),
        "influenza_target_cell": ("virus", "antiviral"),
        "hiv_therapy": ("virus", "antiviral"),
        "glucose_minimal_model": ("physiology",),
    }
)


def bio_systems() -> tuple[System, ...]:
    """Every system of the biology suite, built fresh (models parsed, designs laid out)."""
    return tuple(build() for build in _BUILDERS)

'use strict';

var Plotly = require('plotly.js/lib/core');

Plotly.register([
    // traces (scatter is already registered by core; listed for clarity)
    require('plotly.js/lib/scatter'),
    require('plotly.js/lib/heatmap'),
    require('plotly.js/lib/histogram'),
    require('plotly.js/lib/contour'),

    // components (same as the official cartesian / custom bundles)
    require('plotly.js/lib/calendars'),
]);

module.exports = Plotly;

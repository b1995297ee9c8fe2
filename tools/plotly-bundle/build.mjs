// Reproduces plotly.js v4.1.1's official dist build (esbuild-config.js +
// tasks/util/bundle_wrapper.mjs + tasks/compress_attributes.js +
// tasks/partial_bundle.mjs) for a custom partial bundle.
import fs from 'fs';
import { createRequire } from 'module';
import { build } from 'esbuild';

const require = createRequire(import.meta.url);
const { environmentPlugin } = require('esbuild-plugin-environment');
const { glsl } = require('esbuild-plugin-glsl');
const InlineCSSPlugin = require('esbuild-plugin-inline-css');
const pkg = require('plotly.js/package.json');

const NAME = 'biotwin';
const TRACES = ['scatter', 'histogram', 'contour', 'heatmap'];
const OUT = process.argv[2] || '../plotly-biotwin.min.js';

// == tasks/compress_attributes.js (strip attribute meta: descriptions etc.)
const WHITESPACE_BEFORE = '\\s*';
const OPTIONAL_COMMA = ',?';
const makeRegex = (s) => new RegExp(WHITESPACE_BEFORE + s + OPTIONAL_COMMA, 'g');
const makeStringRegex = (attr) => makeRegex(attr + ": '.*'");
const makeJoinedArrayRegex = (attr) => makeRegex(attr + ': \\[[\\s\\S]*?\\]' + '\\.join\\([\\s\\S]*?\\)');
const makeArrayRegex = (attr) => makeRegex(attr + ': \\[[\\s\\S]*?\\]');
const allRegexes = [
    makeStringRegex('description'),
    makeJoinedArrayRegex('description'),
    makeArrayRegex('requiredOpts'),
    makeArrayRegex('otherOpts'),
    makeStringRegex('role'),
    makeStringRegex('hrName')
];
const esbuildPluginStripMeta = {
    name: 'strip-meta-attributes',
    setup(b) {
        b.onLoad({ filter: /\.js$/ }, async (file) => ({
            contents: await fs.promises.readFile(file.path, 'utf-8').then((c) => {
                allRegexes.forEach((r) => { c = c.replace(r, ''); });
                return c;
            }),
            loader: 'js'
        }));
    }
};

// == esbuild-config.js (esbuildConfig) + minify:true, as for the *.min.js dists
await build({
    entryPoints: ['./index-biotwin.js'],
    outfile: OUT,
    format: 'iife',
    globalName: 'Plotly',
    bundle: true,
    minify: true,
    sourcemap: false,
    plugins: [
        InlineCSSPlugin(),
        glsl({ minify: true }),
        environmentPlugin({ NODE_DEBUG: false }),
        esbuildPluginStripMeta
    ],
    alias: {
        regl: '@plotly/regl',
        stream: 'stream-browserify'
    },
    define: {
        global: 'window',
        'define.amd': 'false'
    },
    target: 'es2016',
    logLevel: 'info'
});

// == bundle_wrapper.mjs addWrapper() + partial_bundle.mjs licence header
const header = [
    '/**',
    '* plotly.js (' + NAME + ' - minified) v' + pkg.version,
    '* Traces: ' + TRACES.join(', '),
    '* Copyright 2012-' + new Date().getFullYear() + ', Plotly, Inc.',
    '* All rights reserved.',
    '* Licensed under the MIT license',
    '*/',
    ''
].join('\n');
const umdHead = [
    '(',
    ' function(root, factory) {',
    '  if (typeof module === "object" && module.exports) {',
    '   module.exports = factory();',
    '  } else {',
    '   root.moduleName = factory();',
    '  }',
    '} (typeof self !== "undefined" ? self : this, () => {',
    ''
].join('\n');
const umdTail = ['', 'window.Plotly = Plotly;', 'return Plotly;', '}));'].join('\n');

const body = fs.readFileSync(OUT, 'utf-8');
fs.writeFileSync(OUT, header + umdHead + body + umdTail);
const cssOut = OUT.replace(/\.js$/, '.css');
if (fs.existsSync(cssOut)) fs.unlinkSync(cssOut);
console.log('wrote', OUT, fs.statSync(OUT).size, 'bytes');

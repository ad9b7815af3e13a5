// Loads the native addon built by build.mjs (types: native.d.ts, generated).
'use strict'
module.exports = require('./workz-build.node')

'use strict'
// fuse-native's low-level mode (strata): see lowlevel/fuse_ll.c and strata's
// native-deps/fuse-native/README.md. Built by node-gyp as build/Release/fuse_ll.node.
const path = require('path')
const binding = require(path.join(__dirname, '..', 'build', 'Release', 'fuse_ll.node'))
if (binding.strata_lowlevel !== 1) throw new Error('fuse-native: fuse_ll.node is not the strata low-level build')
module.exports = binding

#!/usr/bin/env node
// Runs the TypeScript CLI directly through tsx, so the package needs no build step.
require('tsx/cjs');
require('../src/cli/main.ts')
  .main(process.argv.slice(2))
  .then((code) => { process.exitCode = code; });

#!/usr/bin/env node
// In a checkout the TypeScript CLI runs through tsx, so there is no build step; the installed package (no src/) runs
// its compiled lib/.
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const source = join(__dirname, '..', 'src', 'cli', 'main.ts');
let cli;
if (existsSync(source)) {
  require('tsx/cjs');
  cli = require(source);
} else {
  cli = require('../lib/src/cli/main.js');
}
cli.main(process.argv.slice(2)).then((code) => { process.exitCode = code; });

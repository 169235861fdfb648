#!/usr/bin/env node
/** The `inbox-relay` executable (package.json `bin`): see run.ts for the commands. */
import { processIo } from './io.js';
import { runCli } from './run.js';

const code = await runCli(process.argv.slice(2), processIo());
if (code !== 'running') process.exitCode = code;

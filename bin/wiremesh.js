#!/usr/bin/env node
import { main } from '../dist/src/cli/wiremesh.js';

process.exitCode = await main(process.argv.slice(2));

#!/usr/bin/env bun
// The executable's entry: hands the command line to cli/.
import { runCli } from "./cli/mod.ts";

process.exitCode = await runCli(process.argv.slice(2));

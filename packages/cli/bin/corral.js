#!/usr/bin/env node
// The installed entry point runs the compiled CLI.
import '../dist/main.js';

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { openStore } from './open-store.js';
import { runStoreSuite } from './store-suite.js';

const dir = mkdtempSync(join(tmpdir(), 'corral-sqlite-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

runStoreSuite('SQLite store (file)', () => openStore({ kind: 'sqlite', path: join(dir, 'nested', 'corral.db') }));
runStoreSuite('SQLite store (:memory:)', () => openStore({ kind: 'sqlite', path: ':memory:' }));

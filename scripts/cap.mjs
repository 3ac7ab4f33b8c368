// Runs the Capacitor CLI (`@capacitor/cli`, installed with the project) under the Node that runs
// this script. The CLI's launcher refuses Node < 22 on its `engines` field alone; its code does
// not need Node 22 for what Conclave uses (`add`, `sync`, `copy`, `update`, `doctor`, `ls`): they
// were run under Node 20.20 and checked (e2e/mobile.test.ts runs `sync` and `doctor` and compares
// the copied app byte for byte). The config file is TypeScript, which the CLI compiles with the
// project's own `typescript` (5.x, the classic compiler API it expects).
// Usage: node scripts/cap.mjs <capacitor command and options>, e.g. `node scripts/cap.mjs sync`.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
/** @type {{ run: () => Promise<void> }} */
const cli = require('@capacitor/cli/dist/index.js');
void cli.run();

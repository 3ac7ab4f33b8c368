// `npm start`. The relay and the browser app are not built yet, so for now this says what
// Conclave is and what exists, prepares the local data folder, and exits.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

const dataDir = join(root, '.conclave');
const existed = existsSync(dataDir);
mkdirSync(dataDir, { recursive: true });

const lines = [
  `Conclave ${version}`,
  '',
  'A community platform in the shape of Discord (Spaces, chat and forum channels, threads,',
  'posts, roles, moderation) with no server that can read anything: every Space is an MLS',
  'group, every action a signed operation, all content end-to-end encrypted, and relays',
  'store and forward ciphertext they cannot read.',
  '',
  'Not built yet: the relay (relay/) and the browser app (web/, worker/) come in later work.',
  'What exists today is the peer core (shared/) and its tests: run them with `npm test`.',
  '',
  `Data folder: ${dataDir} (${existed ? 'already there' : 'created'})`,
];
process.stdout.write(`${lines.join('\n')}\n`);

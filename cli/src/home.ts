/**
 * The home folder of a CLI identity (`--home`, `$CONCLAVE_HOME`, `~/.conclave`):
 *   identity        the identity's secrets, sealed with the passphrase (or unprotected, for test homes)
 *   config.json     `{"relays": [...]}`: relays to use when none are given on the command line
 *   conclave.db     ops, heads, MLS state, outbox, cursors and the attachment cache (SQLite, WAL)
 *   lock            held by the running command, so two never write the same home at once
 * Files are written whole or not at all (a temporary file, fsync, rename, fsync of the folder).
 */
import {
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { openBlobCache, type BlobCache } from '../../shared/src/blob/cache.js';
import { nodeAead } from '../../shared/src/crypto/aead.node.js';
import { nodeEd25519 } from '../../shared/src/crypto/ed25519.node.js';
import { nodeSha256 } from '../../shared/src/crypto/sha256.node.js';
import { lazyLibp2pConnector } from '../../shared/src/net/libp2p.js';
import { systemClock, webRng } from '../../shared/src/ports/env.js';
import { type Storage, StorageError } from '../../shared/src/ports/storage.js';
import {
  type IdentitySecrets,
  IdentityError,
  decodeSecrets,
  encodeSecrets,
} from '../../shared/src/peer/identity.js';
import { Peer, type PeerEvent } from '../../shared/src/peer/peer.js';
import {
  DEFAULT_KDF_PARAMS,
  type KdfParams,
  SecretsError,
  openWithPassphrase,
  sealWithPassphrase,
  sealWithoutPassphrase,
} from '../../shared/src/peer/sealed-secrets.js';
import { CliError } from './args.js';
import { openSqliteChunkStore, openSqliteStorage } from './storage.sqlite.js';

/** Bytes of attachments the home keeps cached (pinned ones may exceed it). */
export const BLOB_CACHE_BYTES = 256 * 1024 * 1024;
const MAX_CONFIG_BYTES = 64 * 1024;
const MAX_IDENTITY_BYTES = 64 * 1024;

export const ed25519 = nodeEd25519();
export const aead = nodeAead();

export function homeDir(option: string | undefined, env: NodeJS.ProcessEnv): string {
  const h = option ?? env.CONCLAVE_HOME;
  return resolve(h === undefined || h === '' ? join(homedir(), '.conclave') : h);
}

/** Writes `bytes` to `path` whole or not at all, readable by the owner only. */
export function writeAtomic(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
  try {
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(resolve(path, '..'), constants.O_RDONLY);
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

function readLimited(path: string, max: number, what: string): Uint8Array {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new CliError('storage', `cannot read the ${what} (${path}): ${(e as Error).message}`, 4);
  }
  if (bytes.length > max)
    throw new CliError('home-corrupt', `the ${what} is damaged: too large (${path})`, 4);
  return new Uint8Array(bytes);
}

export interface HomeConfig {
  readonly relays: readonly string[];
}

/** Where the passphrase comes from: `$CONCLAVE_PASSPHRASE`, or a prompt on a terminal. */
export interface PassphraseSource {
  get(purpose: 'unlock' | 'create' | 'backup'): Promise<string | undefined>;
}

export class Home {
  private lockFd: number | undefined;

  constructor(readonly dir: string) {}

  get identityPath(): string {
    return join(this.dir, 'identity');
  }
  get configPath(): string {
    return join(this.dir, 'config.json');
  }
  get dbPath(): string {
    return join(this.dir, 'conclave.db');
  }

  hasIdentity(): boolean {
    return existsSync(this.identityPath);
  }

  /**
   * Takes the home's lock; a second command on the same home meanwhile is refused (exit 4).
   * A lock left by a process that no longer runs is taken over.
   */
  lock(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const path = join(this.dir, 'lock');
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        this.lockFd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
        writeSync(this.lockFd, `${process.pid}\n`);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new CliError(
            'storage',
            `cannot lock the home folder ${this.dir}: ${(e as Error).message}`,
            4,
          );
        }
        const pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
        if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
          throw new CliError(
            'home-busy',
            `another conclave process (pid ${pid}) is using ${this.dir}; stop it or use another --home`,
            4,
          );
        }
        rmSync(path, { force: true });
      }
    }
    throw new CliError('home-busy', `cannot lock the home folder ${this.dir}`, 4);
  }

  unlock(): void {
    if (this.lockFd === undefined) return;
    closeSync(this.lockFd);
    this.lockFd = undefined;
    rmSync(join(this.dir, 'lock'), { force: true });
  }

  readConfig(): HomeConfig {
    if (!existsSync(this.configPath)) return { relays: [] };
    const text = new TextDecoder().decode(readLimited(this.configPath, MAX_CONFIG_BYTES, 'config'));
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      throw new CliError('home-corrupt', `the config is not JSON (${this.configPath})`, 4);
    }
    const relays = (v as { relays?: unknown } | null)?.relays;
    if (
      typeof v !== 'object' ||
      v === null ||
      (relays !== undefined && (!Array.isArray(relays) || !relays.every((r) => typeof r === 'string')))
    ) {
      throw new CliError(
        'home-corrupt',
        `the config must be {"relays": [multiaddr, ...]} (${this.configPath})`,
        4,
      );
    }
    return { relays: relays ?? [] };
  }

  writeConfig(c: HomeConfig): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeAtomic(
      this.configPath,
      new TextEncoder().encode(`${JSON.stringify({ relays: c.relays }, null, 2)}\n`),
    );
  }

  /** Seals and writes the identity; `passphrase` null leaves it unprotected (test homes). */
  async writeIdentity(
    secrets: IdentitySecrets,
    passphrase: string | null,
    kdf: KdfParams = DEFAULT_KDF_PARAMS,
  ) {
    const payload = encodeSecrets(secrets);
    const sealed =
      passphrase === null
        ? sealWithoutPassphrase(payload)
        : await sealWithPassphrase(payload, passphrase, { aead, rng: webRng }, kdf);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeAtomic(this.identityPath, sealed);
  }

  /** Reads and opens the identity. */
  async readIdentity(passphrases: PassphraseSource, noPassphrase: boolean): Promise<IdentitySecrets> {
    if (!this.hasIdentity()) {
      throw new CliError(
        'no-identity',
        `no identity in ${this.dir}: run "conclave identity create --name NAME"`,
        2,
      );
    }
    const sealed = readLimited(this.identityPath, MAX_IDENTITY_BYTES, 'identity file');
    let payload: Uint8Array;
    try {
      payload = await openWithPassphrase(sealed, null, { aead });
    } catch (e) {
      if (!(e instanceof SecretsError) || e.code !== 'passphrase-required') throw secretsError(e);
      if (noPassphrase)
        throw new CliError('passphrase-required', 'this identity is protected by a passphrase', 2);
      const p = await passphrases.get('unlock');
      if (p === undefined) {
        throw new CliError(
          'passphrase-required',
          'this identity is protected by a passphrase: set CONCLAVE_PASSPHRASE or run on a terminal',
          2,
        );
      }
      try {
        payload = await openWithPassphrase(sealed, p, { aead });
      } catch (e2) {
        throw secretsError(e2);
      }
    }
    try {
      return decodeSecrets(payload);
    } catch (e) {
      if (e instanceof IdentityError)
        throw new CliError('home-corrupt', `the identity file is damaged: ${e.message}`, 4);
      throw e;
    }
  }

  /** Opens the home's storage and a Peer on it (not yet online). */
  async openPeer(
    secrets: IdentitySecrets,
    relays: readonly string[],
    onEvent?: (e: PeerEvent) => void,
  ): Promise<OpenPeer> {
    let storage: Storage | undefined;
    let blobs: BlobCache | undefined;
    try {
      storage = await openSqliteStorage(this.dbPath);
      blobs = await openBlobCache(await openSqliteChunkStore(this.dbPath), { quotaBytes: BLOB_CACHE_BYTES });
      const connector = lazyLibp2pConnector({
        dialTimeoutMs: 5_000,
        // Loaded with the network: a command that stays offline does not load libsodium.
        noiseCrypto: async () =>
          (await import('../../shared/src/net/noise-crypto.node.js')).loadNodeNoiseCrypto(),
      });
      const peer = await Peer.open({
        secrets,
        storage,
        connector,
        relays,
        ed25519,
        aead,
        clock: systemClock,
        rng: webRng,
        sha256: nodeSha256,
        blobs,
        ...(onEvent === undefined ? {} : { onEvent }),
      });
      const s = storage;
      const b = blobs;
      return {
        peer,
        async close() {
          await peer.close();
          await connector.stop();
          await b.close();
          await s.close();
        },
      };
    } catch (e) {
      await blobs?.close().catch(() => undefined);
      await storage?.close().catch(() => undefined);
      throw storageError(e);
    }
  }
}

export interface OpenPeer {
  readonly peer: Peer;
  close(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function secretsError(e: unknown): CliError {
  if (!(e instanceof SecretsError)) return storageError(e);
  switch (e.code) {
    case 'wrong-passphrase':
      return new CliError('wrong-passphrase', 'wrong passphrase, or the identity file was damaged', 2);
    case 'passphrase-required':
      return new CliError('passphrase-required', 'this identity is protected by a passphrase', 2);
    default:
      return new CliError('home-corrupt', `the identity file is damaged: ${e.message}`, 4);
  }
}

/** Storage failures as the CLI reports them (exit 4). */
export function storageError(e: unknown): CliError {
  if (e instanceof CliError) return e;
  if (e instanceof StorageError) {
    const code = e.code === 'corrupt' ? 'home-corrupt' : 'storage';
    return new CliError(code, `local storage: ${e.message}`, 4, { cause: e });
  }
  if (e instanceof IdentityError)
    return new CliError('home-corrupt', `the identity is damaged: ${e.message}`, 4);
  throw e;
}

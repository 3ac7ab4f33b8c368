/**
 * The commands of `conclave` (cli/README.md documents each, with its JSON). Each returns one
 * result: a JSON value (printed with `--json`) and the text a person reads. Failures are
 * `CliError`s with a stable code and exit code.
 */
import { readFileSync, statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { BlobError } from '../../shared/src/blob/errors.js';
import { verifyAuditBundle } from '../../shared/src/core/audit.js';
import type { SpaceState } from '../../shared/src/core/state.js';
import { parseInviteLink } from '../../shared/src/mls/invite.js';
import { MailboxError } from '../../shared/src/ports/mailbox.js';
import { NetworkError } from '../../shared/src/ports/network.js';
import { webRng, systemClock } from '../../shared/src/ports/env.js';
import { StorageError } from '../../shared/src/ports/storage.js';
import {
  createSecrets,
  encodeBackup,
  restoreBackup,
  IdentityError,
  checkDisplayName,
} from '../../shared/src/peer/identity.js';
import { type Peer, PeerError, type PeerEvent } from '../../shared/src/peer/peer.js';
import { channelItems, memberItems, nameIn, postItems } from '../../shared/src/peer/views.js';
import {
  SecretsError,
  openWithPassphrase,
  sealWithPassphrase,
} from '../../shared/src/peer/sealed-secrets.js';
import type {
  ChannelId,
  InviteId,
  PostId,
  SpaceId,
  ThreadId,
  UserId,
} from '../../shared/src/protocol/index.js';
import { equalBytes } from '../../shared/src/protocol/ids.js';
import { MAX_BLOB_BYTES } from '../../shared/src/blob/limits.js';
import { fromMultibase, toMultibase } from '../../shared/src/protocol/multibase.js';
import { toBase64Url, fromBase64Url } from '../../shared/src/protocol/base64url.js';
import {
  CliError,
  type OptionSpecs,
  type Parsed,
  parseCount,
  parseDuration,
  parseWait,
  usage,
} from './args.js';
import { type Home, type PassphraseSource, aead, ed25519, storageError, writeAtomic } from './home.js';

export interface Context {
  readonly home: Home;
  readonly relays: readonly string[];
  readonly json: boolean;
  readonly noPassphrase: boolean;
  readonly passphrases: PassphraseSource;
  /** One line per event, for `serve` (stdout). */
  readonly log: (line: string) => void;
  /** Notes for people (stderr, text mode only). */
  readonly note: (line: string) => void;
  /** Resolves when the process was asked to stop (SIGINT/SIGTERM). */
  readonly stopped: Promise<void>;
}

export interface Result {
  readonly json: unknown;
  readonly text: string;
}

export interface Command {
  /** Words that name it: `space create`. */
  readonly name: string;
  readonly args: string;
  readonly summary: string;
  readonly options: OptionSpecs;
  readonly help?: string;
  run(ctx: Context, p: Parsed): Promise<Result>;
}

// ---------- ids, names, times ----------

const id = (b: Uint8Array): string => toMultibase(b);
const at = (ms: number): string => new Date(ms).toISOString();

function parseId(text: string, bytes: number): Uint8Array | undefined {
  if (text.length > 64) return undefined;
  const b = fromMultibase(text);
  return b?.length === bytes ? b : undefined;
}

function positional(p: Parsed, i: number, name: string): string {
  const v = p.positionals[i];
  if (v === undefined) throw usage(`missing ${name}`);
  return v;
}

function noMore(p: Parsed, n: number): void {
  if (p.positionals.length > n) throw usage(`unexpected argument "${p.positionals[n] ?? ''}"`);
}

function unknown(what: string, text: string): CliError {
  return new CliError(`unknown-${what}`, `no ${what} "${text}" here`, 1);
}

function resolveSpace(peer: Peer, text: string): SpaceId {
  const spaces = peer.spaces();
  const b = parseId(text, 16);
  if (b !== undefined) {
    const s = spaces.find((x) => equalBytes(x.spaceId, b));
    if (s !== undefined) return s.spaceId;
  }
  const named = spaces.filter((s) => s.name === text);
  if (named.length === 1 && named[0] !== undefined) return named[0].spaceId;
  if (named.length > 1) throw new CliError('ambiguous', `several Spaces are named "${text}": use its id`, 1);
  throw unknown('space', text);
}

function resolveChannel(state: SpaceState, text: string): { channelId: ChannelId; type: 'chat' | 'forum' } {
  const channels = state.channels();
  const b = parseId(text, 16);
  const byId = b === undefined ? undefined : channels.find((c) => equalBytes(c.channelId, b));
  const name = text.replace(/^#/, '');
  const named = channels.filter((c) => c.name === name);
  const c = byId ?? (named.length === 1 ? named[0] : undefined);
  if (named.length > 1 && byId === undefined)
    throw new CliError('ambiguous', `several channels are named "${name}": use its id`, 1);
  if (c === undefined) throw unknown('channel', text);
  return { channelId: c.channelId as ChannelId, type: c.type };
}

function resolveThread(state: SpaceState, channel: ChannelId, text: string): ThreadId {
  const threads = state.threadsIn(channel);
  const b = parseId(text, 16);
  const byId = b === undefined ? undefined : threads.find((t) => equalBytes(t.threadId, b));
  const named = threads.filter((t) => t.title === text);
  const t = byId ?? (named.length === 1 ? named[0] : undefined);
  if (t === undefined) throw unknown('thread', text);
  return t.threadId as ThreadId;
}

function resolvePost(state: SpaceState, text: string): PostId {
  const b = parseId(text, 16);
  const post = b === undefined ? undefined : state.post(b);
  if (post === undefined || post.deleted) throw unknown('post', text);
  return post.postId as PostId;
}

/**
 * A user of the Space by id or display name: a member, or someone removed or banned. `anyone`
 * (for `ban`) also takes the id of someone who never joined, to keep them out.
 */
function resolveUser(peer: Peer, space: SpaceId, text: string, anyone = false): UserId {
  const b = parseId(text, 32);
  if (b !== undefined) {
    if (anyone || peer.members(space).some((m) => equalBytes(m.userId, b))) return b as UserId;
    throw new CliError('unknown-user', `no user ${text} in this Space`, 1);
  }
  const named = peer.members(space).filter((m) => m.name === text);
  if (named.length === 1 && named[0] !== undefined) return named[0].userId;
  if (named.length > 1)
    throw new CliError('ambiguous', `several members are named "${text}": use the user id`, 1);
  throw unknown('user', text);
}

function nameOf(state: SpaceState, user: UserId): string {
  return nameIn(state, user);
}

// ---------- running a peer ----------

type Online = 'no' | 'try' | 'require';

/** Locks the home, opens the identity and a Peer, runs `fn`, and closes everything. */
async function withPeer<T>(
  ctx: Context,
  online: Online,
  fn: (peer: Peer, isOnline: boolean) => Promise<T>,
  options: { extraRelays?: readonly string[]; onEvent?: (e: PeerEvent) => void } = {},
): Promise<T> {
  ctx.home.lock();
  try {
    const secrets = await ctx.home.readIdentity(ctx.passphrases, ctx.noPassphrase);
    const relays = relaysOf(ctx, options.extraRelays);
    const open = await ctx.home.openPeer(secrets, relays, options.onEvent);
    try {
      let isOnline = false;
      if (online !== 'no' && relays.length > 0) isOnline = await open.peer.goOnline();
      if (online === 'require' && !isOnline) {
        throw new CliError(
          'offline',
          relays.length === 0
            ? 'no relay configured: give --relay MULTIADDR or set CONCLAVE_RELAYS'
            : 'no relay could be reached',
          3,
        );
      }
      if (online === 'try' && relays.length > 0 && !isOnline)
        ctx.note('offline: no relay could be reached; working on what this device has');
      return await fn(open.peer, isOnline);
    } finally {
      await open.close();
    }
  } catch (e) {
    throw asCliError(e);
  } finally {
    ctx.home.unlock();
  }
}

function relaysOf(ctx: Context, extra: readonly string[] = []): string[] {
  const base = ctx.relays.length > 0 ? ctx.relays : ctx.home.readConfig().relays;
  const out = [...base];
  for (const r of extra) if (!out.includes(r)) out.push(r);
  return out;
}

/** Any failure as a CliError with the documented exit code. */
export function asCliError(e: unknown): CliError {
  if (e instanceof CliError) return e;
  if (e instanceof PeerError) {
    switch (e.code) {
      case 'unknown':
        return new CliError('unknown-id', e.message, 1, { cause: e });
      case 'invalid':
        return new CliError('invalid', e.message, 1, { cause: e });
      case 'removed':
        return new CliError('removed', e.message, 2, { cause: e });
      case 'refused':
        return new CliError('refused', e.message, 2, { cause: e });
      case 'invite':
        return new CliError('invite-refused', e.message, 2, { cause: e });
      case 'offline':
        return new CliError('offline', e.message, 3, { cause: e });
    }
  }
  if (e instanceof MailboxError || e instanceof NetworkError)
    return new CliError('offline', `network: ${e.message}`, 3, { cause: e });
  if (e instanceof BlobError) {
    return e.code === 'transport' || e.code === 'missing'
      ? new CliError('offline', `attachment: ${e.message}`, 3, { cause: e })
      : new CliError('invalid', `attachment: ${e.message}`, 1, { cause: e });
  }
  if (e instanceof StorageError || e instanceof IdentityError) return storageError(e);
  if (e instanceof SecretsError) return new CliError('home-corrupt', e.message, 4, { cause: e });
  return new CliError('internal', e instanceof Error ? `${e.name}: ${e.message}` : String(e), 4, {
    cause: e,
  });
}

async function withSpace<T>(
  ctx: Context,
  p: Parsed,
  online: Online,
  fn: (peer: Peer, space: SpaceId, isOnline: boolean) => Promise<T>,
): Promise<T> {
  return withPeer(ctx, online, async (peer, isOnline) => {
    const space = resolveSpace(peer, positional(p, 0, 'SPACE'));
    let fresh = false;
    if (isOnline) {
      try {
        fresh = await peer.catchUp(space);
      } catch (e) {
        if (!(e instanceof PeerError) || e.code !== 'offline') throw e;
        ctx.note('the relays did not answer in time; working on what this device has');
      }
    }
    return fn(peer, space, fresh);
  });
}

function status(s: 'sent' | 'queued'): string {
  return s === 'sent' ? 'sent' : 'queued: no relay took it yet; it goes out with the next command online';
}

// ---------- views ----------

const MIME: Readonly<Record<string, string>> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain',
  '.md': 'text/markdown',
  '.pdf': 'application/pdf',
  '.json': 'application/json',
  '.zip': 'application/zip',
  '.mp3': 'audio/mpeg',
  '.mp4': 'video/mp4',
};

function readAttachment(path: string): { bytes: Uint8Array; name: string; mime: string } {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    throw new CliError('file', `cannot read ${path}: ${(e as Error).message}`, 1);
  }
  if (size > MAX_BLOB_BYTES) throw new CliError('file', `${path} is larger than ${MAX_BLOB_BYTES} bytes`, 1);
  const bytes = new Uint8Array(readFileSync(path));
  return {
    bytes,
    name: basename(path).slice(0, 100),
    mime: MIME[extname(path).toLowerCase()] ?? 'application/octet-stream',
  };
}

// ---------- the commands ----------

const none: OptionSpecs = {};
const waitOpt: OptionSpecs = { wait: { type: 'string' } };
const AUDIT_FORMAT = 'conclave-audit/1';

export const COMMANDS: readonly Command[] = [
  {
    name: 'identity create',
    args: '--name NAME',
    summary: 'create this home’s identity: a user key, a device key, a display name',
    options: { name: { type: 'string' } },
    async run(ctx, p) {
      noMore(p, 0);
      const raw = p.strings.get('name');
      if (raw === undefined) throw usage('give --name NAME');
      let name: string;
      try {
        name = checkDisplayName(raw);
      } catch (e) {
        throw new CliError('invalid', (e as Error).message, 1);
      }
      ctx.home.lock();
      try {
        if (ctx.home.hasIdentity())
          throw new CliError('identity-exists', `${ctx.home.dir} already holds an identity`, 2);
        const pass = ctx.noPassphrase ? null : await ctx.passphrases.get('create');
        if (pass === undefined)
          throw usage('set CONCLAVE_PASSPHRASE, run on a terminal, or use --no-passphrase (test homes)');
        const secrets = await createSecrets({ ed25519, clock: systemClock, rng: webRng }, name);
        await ctx.home.writeIdentity(secrets, pass);
        const user = (await ed25519.fromSeed(secrets.userSeed)).publicKey;
        return { json: { userId: id(user), name }, text: `created ${name} (${id(user)})` };
      } finally {
        ctx.home.unlock();
      }
    },
  },
  {
    name: 'identity show',
    args: '',
    summary: 'show the user id, device id and display name',
    options: none,
    async run(ctx, p) {
      noMore(p, 0);
      return withPeer(ctx, 'no', (peer) => {
        const j = { userId: id(peer.userId), deviceId: id(peer.identity.device), name: peer.name };
        return Promise.resolve({ json: j, text: `${j.name}\nuser   ${j.userId}\ndevice ${j.deviceId}` });
      });
    },
  },
  {
    name: 'identity export',
    args: '--out FILE',
    summary: 'write an encrypted backup of the identity (user key and name)',
    options: { out: { type: 'string' } },
    help: 'The backup is encrypted with a passphrase: $CONCLAVE_BACKUP_PASSPHRASE, else $CONCLAVE_PASSPHRASE, else asked.',
    async run(ctx, p) {
      noMore(p, 0);
      const out = p.strings.get('out');
      if (out === undefined) throw usage('give --out FILE');
      if (!ctx.home.hasIdentity())
        throw new CliError('no-identity', `no identity in ${ctx.home.dir}: nothing to export`, 2);
      const pass = await ctx.passphrases.get('backup');
      if (pass === undefined) throw usage('set CONCLAVE_BACKUP_PASSPHRASE or run on a terminal');
      ctx.home.lock();
      try {
        const secrets = await ctx.home.readIdentity(ctx.passphrases, ctx.noPassphrase);
        const sealed = await sealWithPassphrase(encodeBackup(secrets), pass, { aead, rng: webRng });
        try {
          writeAtomic(out, sealed);
        } catch (e) {
          throw new CliError('file', `cannot write ${out}: ${(e as Error).message}`, 4);
        }
        const user = (await ed25519.fromSeed(secrets.userSeed)).publicKey;
        return { json: { userId: id(user), file: out }, text: `backup written to ${out}` };
      } catch (e) {
        throw asCliError(e);
      } finally {
        ctx.home.unlock();
      }
    },
  },
  {
    name: 'identity import',
    args: 'FILE',
    summary: 'restore an identity from a backup into this (empty) home, as a new device',
    options: none,
    async run(ctx, p) {
      const file = positional(p, 0, 'FILE');
      noMore(p, 1);
      let sealed: Uint8Array;
      try {
        sealed = new Uint8Array(readFileSync(file));
      } catch (e) {
        throw new CliError('file', `cannot read ${file}: ${(e as Error).message}`, 1);
      }
      ctx.home.lock();
      try {
        if (ctx.home.hasIdentity())
          throw new CliError('identity-exists', `${ctx.home.dir} already holds an identity`, 2);
        const pass = await ctx.passphrases.get('backup');
        if (pass === undefined) throw usage('set CONCLAVE_BACKUP_PASSPHRASE or run on a terminal');
        let payload: Uint8Array;
        try {
          payload = await openWithPassphrase(sealed, pass, { aead });
        } catch (e) {
          if (e instanceof SecretsError && e.code === 'wrong-passphrase')
            throw new CliError('wrong-passphrase', 'wrong passphrase, or the backup was damaged', 2);
          throw new CliError('bad-backup', `not a Conclave backup: ${(e as Error).message}`, 1);
        }
        let secrets;
        try {
          secrets = await restoreBackup({ ed25519, clock: systemClock, rng: webRng }, payload);
        } catch (e) {
          throw new CliError('bad-backup', `not a Conclave backup: ${(e as Error).message}`, 1);
        }
        const homePass = ctx.noPassphrase ? null : await ctx.passphrases.get('create');
        if (homePass === undefined)
          throw usage('set CONCLAVE_PASSPHRASE, run on a terminal, or use --no-passphrase');
        await ctx.home.writeIdentity(secrets, homePass);
        const user = (await ed25519.fromSeed(secrets.userSeed)).publicKey;
        return {
          json: { userId: id(user), name: secrets.name },
          text: `restored ${secrets.name} (${id(user)}) as a new device; join your Spaces again with an invite`,
        };
      } finally {
        ctx.home.unlock();
      }
    },
  },
  {
    name: 'space create',
    args: 'NAME',
    summary: 'create a Space; you are its admin',
    options: none,
    async run(ctx, p) {
      const name = positional(p, 0, 'NAME');
      noMore(p, 1);
      return withPeer(ctx, 'try', async (peer) => {
        const r = await peer.createSpace(name);
        return { json: { spaceId: id(r.spaceId), status: r.status }, text: `${id(r.spaceId)}  ${name}` };
      });
    },
  },
  {
    name: 'space list',
    args: '',
    summary: 'the Spaces of this identity',
    options: none,
    async run(ctx, p) {
      noMore(p, 0);
      return withPeer(ctx, 'no', (peer) => {
        const spaces = peer
          .spaces()
          .map((s) => ({ spaceId: id(s.spaceId), name: s.name, role: s.role, status: s.status }));
        const text = spaces.map(
          (s) => `${s.spaceId}  ${s.name}  ${s.role}${s.status === 'member' ? '' : ` (${s.status})`}`,
        );
        return Promise.resolve({ json: { spaces }, text: text.join('\n') || '(no Spaces)' });
      });
    },
  },
  {
    name: 'space info',
    args: 'SPACE',
    summary: 'name, epoch, members, channels and settings of a Space',
    options: none,
    async run(ctx, p) {
      noMore(p, 1);
      return withSpace(ctx, p, 'try', (peer, space) => {
        const state = peer.state(space);
        const g = peer.group(space);
        const s = state.settings();
        const channels = state
          .channels()
          .map((c) => ({ channelId: id(c.channelId), name: c.name, type: c.type }));
        const j = {
          spaceId: id(space),
          name: s.name,
          epoch: g.epoch,
          members: g.users.length,
          channels,
          settings: { description: s.description, historyVisibility: s.historyVisibility },
        };
        const text = [
          `${j.name} (${j.spaceId})`,
          `epoch ${j.epoch}, ${j.members} member(s), history visible to new members: ${s.historyVisibility}`,
          ...channels.map((c) => `  #${c.name} (${c.type}) ${c.channelId}`),
        ].join('\n');
        return Promise.resolve({ json: j, text });
      });
    },
  },
  {
    name: 'space settings',
    args: 'SPACE [--history all] [--name NAME] [--description TEXT]',
    summary: 'change a Space’s settings (admins)',
    options: { history: { type: 'string' }, name: { type: 'string' }, description: { type: 'string' } },
    async run(ctx, p) {
      noMore(p, 1);
      const h = p.strings.get('history');
      if (h !== undefined && h !== 'all' && h !== 'sinceJoin') throw usage('--history is all or sinceJoin');
      const name = p.strings.get('name') ?? null;
      const description = p.strings.get('description') ?? null;
      if (h === undefined && name === null && description === null) throw usage('nothing to change');
      return withSpace(ctx, p, 'try', async (peer, space) => {
        const w = await peer.setSettings(space, { name, description, historyVisibility: h ?? null });
        const s = peer.state(space).settings();
        return {
          json: {
            spaceId: id(space),
            settings: { name: s.name, description: s.description, historyVisibility: s.historyVisibility },
            status: w.status,
          },
          text: `settings changed (${status(w.status)})`,
        };
      });
    },
  },
  {
    name: 'channel create',
    args: 'SPACE NAME [--type chat|forum] [--topic TEXT]',
    summary: 'create a channel (admins)',
    options: { type: { type: 'string' }, topic: { type: 'string' } },
    async run(ctx, p) {
      const name = positional(p, 1, 'NAME').replace(/^#/, '');
      noMore(p, 2);
      const type = p.strings.get('type') ?? 'chat';
      if (type !== 'chat' && type !== 'forum') throw usage('--type is chat or forum');
      return withSpace(ctx, p, 'try', async (peer, space) => {
        const r = await peer.createChannel(space, name, type, p.strings.get('topic') ?? '');
        return {
          json: { channelId: id(r.channelId), status: r.status },
          text: `#${name} ${id(r.channelId)} (${status(r.status)})`,
        };
      });
    },
  },
  {
    name: 'channel list',
    args: 'SPACE',
    summary: 'the channels of a Space',
    options: none,
    async run(ctx, p) {
      noMore(p, 1);
      return withSpace(ctx, p, 'try', (peer, space) => {
        const channels = channelItems(peer.state(space));
        return Promise.resolve({
          json: { channels },
          text: channels.map((c) => `${c.channelId}  #${c.name}  ${c.type}`).join('\n') || '(no channels)',
        });
      });
    },
  },
  {
    name: 'invite create',
    args: 'SPACE [--role member|moderator] [--expires DURATION] [--uses N] [--web ORIGIN]',
    summary: 'create an invite link (default: member, 7 days, unlimited uses)',
    options: {
      role: { type: 'string' },
      expires: { type: 'string' },
      uses: { type: 'string' },
      web: { type: 'string' },
    },
    async run(ctx, p) {
      noMore(p, 1);
      const role = p.strings.get('role') ?? 'member';
      if (role !== 'member' && role !== 'moderator') throw usage('--role is member or moderator');
      const ttl = parseDuration(p.strings.get('expires') ?? '7d', '--expires');
      const uses = parseCount(p.strings.get('uses') ?? '0', '--uses');
      const web = p.strings.get('web');
      if (web !== undefined && !/^https?:\/\/[^\s#]+$/.test(web)) throw usage('--web is an http(s) origin');
      return withSpace(ctx, p, 'try', async (peer, space) => {
        if (relaysOf(ctx).length === 0)
          throw new CliError(
            'offline',
            'an invite names the relays to join through: configure one with --relay',
            3,
          );
        const r = await peer.createInvite(space, {
          role,
          expiresAtMs: Date.now() + ttl,
          maxUses: uses,
          ...(web === undefined ? {} : { webOrigin: web }),
        });
        return { json: { inviteId: id(r.inviteId), link: r.link, status: r.status }, text: r.link };
      });
    },
  },
  {
    name: 'invite revoke',
    args: 'SPACE INVITE',
    summary: 'revoke an invite',
    options: none,
    async run(ctx, p) {
      const text = positional(p, 1, 'INVITE');
      noMore(p, 2);
      return withSpace(ctx, p, 'try', async (peer, space) => {
        const b = parseId(text, 16);
        if (b === undefined) throw unknown('invite', text);
        const w = await peer.revokeInvite(space, b as InviteId);
        return { json: { inviteId: text, status: w.status }, text: `revoked (${status(w.status)})` };
      });
    },
  },
  {
    name: 'join',
    args: 'LINK [--wait DURATION]',
    summary: 'ask to join a Space by invite link; an admin, moderator or the inviter admits you',
    options: waitOpt,
    async run(ctx, p) {
      const text = positional(p, 0, 'LINK');
      noMore(p, 1);
      const parsed = parseInviteLink(text);
      if (!parsed.ok) throw new CliError(`invite-${parsed.code}`, `bad invite link: ${parsed.message}`, 2);
      const link = parsed.link;
      if (Date.now() > link.expiresAtMs) throw new CliError('invite-expired', 'the invite has expired', 2);
      const wait = parseWait(p.strings.get('wait'), 30_000);
      return withPeer(
        ctx,
        'require',
        async (peer) => {
          if (peer.spaces().some((s) => equalBytes(s.spaceId, link.space) && s.status === 'member'))
            throw new CliError('already-member', 'you are in that Space already', 2);
          if (ctx.relays.length === 0 && ctx.home.readConfig().relays.length === 0)
            ctx.home.writeConfig({ relays: link.relays });
          const r = await peer.join(link, wait);
          const name = peer.state(r.spaceId).settings().name;
          return {
            json: { spaceId: id(r.spaceId), status: r.status, name: r.status === 'joined' ? name : null },
            text:
              r.status === 'joined'
                ? `joined ${name} (${id(r.spaceId)})`
                : 'request sent; no admin or moderator answered yet — run "conclave sync" later',
          };
        },
        { extraRelays: link.relays },
      );
    },
  },
  {
    name: 'post',
    args: 'SPACE CHANNEL TEXT [--title T] [--thread THREAD] [--reply POST] [--file PATH]…',
    summary: 'post in a channel: a chat message, a reply, or a forum thread (with --title)',
    options: {
      title: { type: 'string' },
      thread: { type: 'string' },
      reply: { type: 'string' },
      file: { type: 'list' },
    },
    async run(ctx, p) {
      const chText = positional(p, 1, 'CHANNEL');
      const text = positional(p, 2, 'TEXT');
      noMore(p, 3);
      const files = (p.lists.get('file') ?? []).map(readAttachment);
      return withSpace(ctx, p, 'try', async (peer, space) => {
        const state = peer.state(space);
        const ch = resolveChannel(state, chText);
        const threadText = p.strings.get('thread');
        const replyText = p.strings.get('reply');
        const title = p.strings.get('title');
        const r = await peer.post(space, ch.channelId, text, {
          ...(title === undefined ? {} : { title }),
          ...(threadText === undefined ? {} : { thread: resolveThread(state, ch.channelId, threadText) }),
          ...(replyText === undefined ? {} : { reply: resolvePost(state, replyText) }),
          files,
        });
        return {
          json: {
            postId: id(r.postId),
            threadId: r.threadId === null ? null : id(r.threadId),
            status: r.status,
          },
          text: `${id(r.postId)} ${status(r.status)}`,
        };
      });
    },
  },
  {
    name: 'edit',
    args: 'SPACE POST TEXT',
    summary: 'edit your post',
    options: none,
    async run(ctx, p) {
      const postText = positional(p, 1, 'POST');
      const text = positional(p, 2, 'TEXT');
      noMore(p, 3);
      return withSpace(ctx, p, 'try', async (peer, space) => {
        const post = resolvePost(peer.state(space), postText);
        const w = await peer.editPost(space, post, text);
        return { json: { postId: id(post), status: w.status }, text: `edited (${status(w.status)})` };
      });
    },
  },
  {
    name: 'delete',
    args: 'SPACE POST [--reason TEXT]',
    summary: 'delete a post (yours, or anyone’s as a moderator)',
    options: { reason: { type: 'string' } },
    async run(ctx, p) {
      const postText = positional(p, 1, 'POST');
      noMore(p, 2);
      return withSpace(ctx, p, 'try', async (peer, space) => {
        const post = resolvePost(peer.state(space), postText);
        const w = await peer.deletePost(space, post, p.strings.get('reason') ?? '');
        return { json: { postId: id(post), status: w.status }, text: `deleted (${status(w.status)})` };
      });
    },
  },
  {
    name: 'read',
    args: 'SPACE CHANNEL [--thread THREAD] [--all]',
    summary: 'the posts of a channel or thread, oldest first (tombstones with --all)',
    options: { thread: { type: 'string' }, all: { type: 'flag' } },
    async run(ctx, p) {
      const chText = positional(p, 1, 'CHANNEL');
      noMore(p, 2);
      return withSpace(ctx, p, 'try', (peer, space, fresh) => {
        const state = peer.state(space);
        const ch = resolveChannel(state, chText);
        const threadText = p.strings.get('thread');
        const thread = threadText === undefined ? undefined : resolveThread(state, ch.channelId, threadText);
        const posts = state.postsIn(
          ch.channelId,
          ch.type === 'chat' && thread === undefined ? null : thread,
          p.flags.has('all'),
        );
        const out = postItems(state, posts, ch.channelId);
        const removed = !peer.group(space).active;
        const lines = out.map((x) => {
          const flags = [
            x.edited ? 'edited' : '',
            x.deleted ? 'deleted' : '',
            x.lateAfterRemoval ? 'late: after removal' : '',
          ]
            .filter((f) => f !== '')
            .join(', ');
          const head = x.title === null ? '' : `== ${x.title} ==\n`;
          const reply = x.replyTo === null ? '' : `↪ ${x.replyTo.slice(0, 10)} `;
          const files = x.attachments.map((a) => `\n    [${a.name}, ${a.size} bytes: ${a.blobId}]`).join('');
          return `${head}${x.at.slice(0, 16).replace('T', ' ')} ${x.authorName}: ${reply}${x.deleted ? '(deleted)' : x.text}${flags === '' ? '' : ` (${flags})`}  ${x.postId}${files}`;
        });
        if (removed) ctx.note('you were removed from this Space: this is what you could read before');
        else if (!fresh) ctx.note('offline: showing what this device has');
        return Promise.resolve({
          json: { posts: out, ...(removed ? { removed: true } : {}), ...(fresh ? {} : { offline: true }) },
          text: lines.join('\n') || '(no posts)',
        });
      });
    },
  },
  {
    name: 'get',
    args: 'SPACE BLOB --out FILE',
    summary: 'download and decrypt an attachment',
    options: { out: { type: 'string' } },
    async run(ctx, p) {
      const blobText = positional(p, 1, 'BLOB');
      noMore(p, 2);
      const out = p.strings.get('out');
      if (out === undefined) throw usage('give --out FILE');
      return withSpace(ctx, p, 'try', async (peer, space) => {
        const hash = parseId(blobText, 32);
        if (hash === undefined) throw unknown('blob', blobText);
        const r = await peer.attachment(space, hash);
        try {
          writeAtomic(out, r.bytes);
        } catch (e) {
          throw new CliError('file', `cannot write ${out}: ${(e as Error).message}`, 4);
        }
        return {
          json: { blobId: blobText, name: r.ref.name, mime: r.ref.mime, size: r.bytes.length, file: out },
          text: `${r.ref.name} (${r.bytes.length} bytes) written to ${out}`,
        };
      });
    },
  },
  {
    name: 'members',
    args: 'SPACE',
    summary: 'members, removed and banned users, with roles and mutes',
    options: none,
    async run(ctx, p) {
      noMore(p, 1);
      return withSpace(ctx, p, 'try', (peer, space) => {
        const members = memberItems(peer.members(space));
        const text = members
          .map(
            (m) =>
              `${m.userId}  ${m.name ?? '?'}  ${m.roles.join(',')}  ${m.status}${m.mutedUntil === null ? '' : `  muted until ${m.mutedUntil}`}`,
          )
          .join('\n');
        return Promise.resolve({ json: { members }, text });
      });
    },
  },
  ...(['assign', 'revoke'] as const).map((verb): Command => ({
    name: `role ${verb}`,
    args: 'SPACE USER moderator|admin',
    summary: `${verb} a role (admins)`,
    options: none,
    async run(ctx, p) {
      const userText = positional(p, 1, 'USER');
      const role = positional(p, 2, 'ROLE');
      noMore(p, 3);
      if (role !== 'moderator' && role !== 'admin') throw usage('ROLE is moderator or admin');
      return withSpace(ctx, p, 'try', async (peer, space) => {
        const user = resolveUser(peer, space, userText);
        const w =
          verb === 'assign'
            ? await peer.assignRole(space, user, role)
            : await peer.revokeRole(space, user, role);
        return {
          json: { userId: id(user), role, status: w.status },
          text: `${verb === 'assign' ? 'assigned' : 'revoked'} ${role} (${status(w.status)})`,
        };
      });
    },
  })),
  ...(['kick', 'ban'] as const).map((verb): Command => ({
    name: verb,
    args: 'SPACE USER [--reason TEXT]',
    summary:
      verb === 'kick' ? 'remove a member (they get no new keys)' : 'remove and ban a user (no re-admission)',
    options: { reason: { type: 'string' } },
    async run(ctx, p) {
      const userText = positional(p, 1, 'USER');
      noMore(p, 2);
      return withSpace(ctx, p, 'require', async (peer, space) => {
        const user = resolveUser(peer, space, userText);
        const r = await peer.remove(space, user, {
          ban: verb === 'ban',
          reason: p.strings.get('reason') ?? '',
        });
        return {
          json: { userId: id(user), atEpoch: r.atEpoch },
          text: `${verb === 'kick' ? 'removed' : 'banned'} at epoch ${r.atEpoch}`,
        };
      });
    },
  })),
  {
    name: 'mute',
    args: 'SPACE USER [--for DURATION] [--reason TEXT]',
    summary: 'mute a member (until unmuted, or for a while)',
    options: { for: { type: 'string' }, reason: { type: 'string' } },
    async run(ctx, p) {
      const userText = positional(p, 1, 'USER');
      noMore(p, 2);
      const f = p.strings.get('for');
      const until = f === undefined ? null : Date.now() + parseDuration(f, '--for');
      return withSpace(ctx, p, 'try', async (peer, space) => {
        const user = resolveUser(peer, space, userText);
        const w = await peer.mute(space, user, until, p.strings.get('reason') ?? '');
        return {
          json: { userId: id(user), mutedUntil: until === null ? 'forever' : at(until), status: w.status },
          text: `muted ${until === null ? 'until unmuted' : `until ${at(until)}`} (${status(w.status)})`,
        };
      });
    },
  },
  ...(['unban', 'unmute'] as const).map((verb): Command => ({
    name: verb,
    args: 'SPACE USER',
    summary: verb === 'unban' ? 'lift a ban' : 'lift a mute',
    options: none,
    async run(ctx, p) {
      const userText = positional(p, 1, 'USER');
      noMore(p, 2);
      return withSpace(ctx, p, 'try', async (peer, space) => {
        const user = resolveUser(peer, space, userText);
        const w = verb === 'unban' ? await peer.unban(space, user) : await peer.unmute(space, user);
        return {
          json: { userId: id(user), status: w.status },
          text: `${verb === 'unban' ? 'unbanned' : 'unmuted'} (${status(w.status)})`,
        };
      });
    },
  })),
  {
    name: 'audit',
    args: 'SPACE [--export FILE]',
    summary: 'the moderation log with signatures checked; --export writes a verifiable bundle',
    options: { export: { type: 'string' } },
    async run(ctx, p) {
      noMore(p, 1);
      const file = p.strings.get('export');
      return withSpace(ctx, p, 'try', async (peer, space) => {
        const a = await peer.audit(space);
        const entries = a.entries.map((e) => ({
          kind: e.kind,
          actor: id(e.author),
          target: e.target === null ? null : id(e.target),
          opId: id(e.opId),
          epoch: e.epoch.epoch,
          at: at(e.wallMs),
          reason: e.reason,
          signatureValid: e.signatureValid,
        }));
        if (file !== undefined) {
          const doc = { format: AUDIT_FORMAT, spaceId: id(space), ops: a.bundle.map((b) => toBase64Url(b)) };
          try {
            writeAtomic(file, new TextEncoder().encode(`${JSON.stringify(doc, null, 1)}\n`));
          } catch (e) {
            throw new CliError('file', `cannot write ${file}: ${(e as Error).message}`, 4);
          }
        }
        const state = peer.state(space);
        const text = entries
          .map((e, i) => {
            const src = a.entries[i];
            const who = src === undefined ? e.actor : nameOf(state, src.author);
            const target = src?.target == null ? '' : ` ${nameOf(state, src.target)}`;
            return `${e.at.slice(0, 19).replace('T', ' ')} ${who} ${e.kind}${target}${e.signatureValid ? '' : ' (SIGNATURE INVALID)'}`;
          })
          .join('\n');
        return { json: { entries, ...(file === undefined ? {} : { file }) }, text: text || '(no entries)' };
      });
    },
  },
  {
    name: 'audit verify',
    args: 'FILE',
    summary: 'check an exported audit bundle offline: every op signed by its author’s certified device',
    options: none,
    async run(_ctx, p) {
      const file = positional(p, 0, 'FILE');
      noMore(p, 1);
      let doc: unknown;
      try {
        doc = JSON.parse(readFileSync(file, 'utf8'));
      } catch (e) {
        throw new CliError(
          'audit-invalid',
          `cannot read ${file} as an audit bundle: ${(e as Error).message}`,
          2,
        );
      }
      const d = doc as { format?: unknown; spaceId?: unknown; ops?: unknown };
      const space = typeof d.spaceId === 'string' ? parseId(d.spaceId, 16) : undefined;
      if (
        d.format !== AUDIT_FORMAT ||
        space === undefined ||
        !Array.isArray(d.ops) ||
        d.ops.length > 1_000_000
      )
        throw new CliError('audit-invalid', `${file} is not a Conclave audit bundle`, 2);
      const ops: Uint8Array[] = [];
      for (const [i, o] of (d.ops as unknown[]).entries()) {
        const b = typeof o === 'string' && o.length < 200_000 ? fromBase64Url(o) : undefined;
        if (b === undefined) throw new CliError('audit-invalid', `entry ${i} is not base64url`, 2);
        ops.push(b);
      }
      const check = await verifyAuditBundle(ed25519, space as SpaceId, ops);
      if (!check.ok) throw new CliError('audit-invalid', `entry ${check.index} fails: ${check.reason}`, 2);
      const entries = check.ops.map((op) => ({
        kind: op.kind,
        actor: id(op.cert.user),
        at: at(op.hlc.wallMs),
      }));
      return {
        json: { valid: true, spaceId: d.spaceId, entries },
        text: `valid: ${entries.length} signed entr${entries.length === 1 ? 'y' : 'ies'} of Space ${String(d.spaceId)}`,
      };
    },
  },
  {
    name: 'sync',
    args: '[--wait DURATION]',
    summary: 'pull every Space, complete pending joins, admit join requests, flush the outbox',
    options: waitOpt,
    async run(ctx, p) {
      noMore(p, 0);
      const wait = parseWait(p.strings.get('wait'), 0);
      let removedFrom: string[] = [];
      return withPeer(
        ctx,
        'require',
        async (peer) => {
          const r = await peer.sync(wait);
          const j = {
            accepted: r.accepted,
            rejected: r.rejected,
            admitted: r.admitted,
            outboxLeft: r.outboxLeft,
            joined: r.joined.map(id),
            refused: r.refused.map((x) => ({ spaceId: id(x.space), reason: x.reason })),
            removedFrom,
          };
          const text = [
            `${r.accepted} new op(s), ${r.rejected} refused, ${r.admitted} admitted, ${r.outboxLeft} waiting to send`,
            ...r.joined.map((s) => `joined ${peer.state(s).settings().name} (${id(s)})`),
            ...r.refused.map((x) => `join of ${id(x.space)} refused: ${x.reason}`),
            ...removedFrom.map((s) => `you were removed from ${s}`),
          ].join('\n');
          return { json: j, text };
        },
        {
          onEvent: (e) => {
            if (e.kind === 'removed') removedFrom = [...removedFrom, id(e.space)];
          },
        },
      );
    },
  },
  {
    name: 'serve',
    args: '',
    summary: 'stay online: live sync, admit joins, keep attachments; one line per event; stop with Ctrl-C',
    options: none,
    async run(ctx, p) {
      noMore(p, 0);
      const line = (e: PeerEvent) => {
        const base = {
          at: new Date().toISOString(),
          event: e.kind,
          ...('space' in e && e.space !== undefined ? { spaceId: id(e.space) } : {}),
        };
        let extra: Record<string, unknown> = {};
        if (e.kind === 'accepted') extra = { op: e.op, opId: id(e.opId), own: e.own };
        else if (e.kind === 'rejected') extra = { reason: e.reason, opId: id(e.opId) };
        else if (e.kind === 'admission')
          extra = {
            result: e.report.kind,
            ...('user' in e.report && e.report.user !== undefined ? { userId: id(e.report.user) } : {}),
          };
        else if (e.kind === 'membership') extra = { outcome: e.outcome, epoch: e.epoch };
        else if (e.kind === 'join-refused') extra = { reason: e.reason };
        else if (e.kind === 'error') extra = { message: e.message };
        else if (e.kind === 'pinned') extra = { blobId: id(e.blob), size: e.size };
        ctx.log(
          ctx.json
            ? JSON.stringify({ ...base, ...extra })
            : `${base.at} ${e.kind} ${Object.values(extra).map(String).join(' ')}`,
        );
      };
      return withPeer(
        ctx,
        'require',
        async (peer) => {
          const first = await peer.sync(0);
          ctx.log(
            ctx.json
              ? JSON.stringify({
                  at: new Date().toISOString(),
                  event: 'ready',
                  accepted: first.accepted,
                  rejected: first.rejected,
                  admitted: first.admitted,
                  outboxLeft: first.outboxLeft,
                  joined: first.joined.map(id),
                  refused: first.refused.map((x) => ({ spaceId: id(x.space), reason: x.reason })),
                })
              : `${new Date().toISOString()} ready: ${first.accepted} new op(s), ${first.admitted} admitted`,
          );
          peer.watchInvites();
          await peer.pinAttachments();
          let ticking = false;
          const timer = setInterval(() => {
            if (ticking) return;
            ticking = true;
            peer
              .serveTick()
              .catch((e: unknown) => {
                line({ kind: 'error', space: undefined, message: String(e) });
              })
              .finally(() => {
                ticking = false;
              });
          }, 2_000);
          await ctx.stopped;
          clearInterval(timer);
          return { json: { stopped: true }, text: 'stopped' };
        },
        { onEvent: line },
      );
    },
  },
];

/** `identity create` etc.: the command named by the first one or two words. */
export function findCommand(words: readonly string[]): { command: Command; rest: number } | undefined {
  const two = words.slice(0, 2).join(' ');
  const c2 = COMMANDS.find((c) => c.name === two);
  if (c2 !== undefined) return { command: c2, rest: 2 };
  const c1 = COMMANDS.find((c) => c.name === words[0]);
  return c1 === undefined ? undefined : { command: c1, rest: 1 };
}

export { resolveUser };

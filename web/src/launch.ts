/**
 * What the installed app is opened with, besides its start page (the manifest in
 * vite.config.ts):
 * - an invite through the protocol handler: `/?invite=web+conclave://join/<payload>` (the
 *   browser puts the whole `web+conclave:` URL in `%s`) becomes `/#join=<payload>`, the form
 *   the app joins from;
 * - a shortcut of the app's icon: `/?do=join` (Join space) and `/?do=message` (New message)
 *   put the cursor in the invite link field or the message composer once the app shows it.
 */

const INVITE = /^(?:web\+)?conclave:\/\/join\/([A-Za-z0-9_-]+)$/;

/** The address to show instead of `search` + `hash`, when they carry a protocol-handler invite. */
export function inviteAddress(pathname: string, search: string): string | undefined {
  const invite = new URLSearchParams(search).get('invite');
  const payload = invite === null ? undefined : INVITE.exec(invite.trim())?.[1];
  return payload === undefined ? undefined : `${pathname}#join=${payload}`;
}

/** The field a shortcut asks for, by its accessible name; undefined for no shortcut. */
export function shortcutField(search: string): string | undefined {
  const action = new URLSearchParams(search).get('do');
  return action === 'join' ? 'Invite link' : action === 'message' ? 'Message' : undefined;
}

/** Milliseconds a shortcut waits for its field to be shown (the app opens its worker first). */
const SHORTCUT_WAIT_MS = 15_000;

/** Applies the launch URL: run once before the app mounts. */
export function applyLaunch(win: Window): void {
  const loc = win.location;
  const address = inviteAddress(loc.pathname, loc.search);
  if (address !== undefined) {
    win.history.replaceState(null, '', address);
    return;
  }
  const field = shortcutField(loc.search);
  if (field === undefined) return;
  win.history.replaceState(null, '', loc.pathname);
  const doc = win.document;
  const find = () => doc.querySelector<HTMLElement>(`[aria-label="${field}"]`);
  const focus = (): boolean => {
    const el = find();
    if (el === null) return false;
    el.focus();
    return true;
  };
  const watcher = new MutationObserver(() => {
    if (focus()) watcher.disconnect();
  });
  watcher.observe(doc.body, { childList: true, subtree: true });
  win.setTimeout(() => {
    watcher.disconnect();
  }, SHORTCUT_WAIT_MS);
}

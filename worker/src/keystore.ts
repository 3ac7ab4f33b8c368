/**
 * The identity's secrets in the browser (ARCHITECTURE.md section 10): encrypted with AES-GCM
 * under a non-extractable WebCrypto key that IndexedDB keeps as a `CryptoKey` (the browser
 * never hands its bytes to script), in a database of their own.
 */
import { openDB } from 'idb';
import { StorageError } from '../../shared/src/ports/storage.js';

const DB = 'conclave-keys';
const STORE = 'device';
const KEY = 'identity';

interface Saved {
  readonly key: CryptoKey;
  readonly nonce: Uint8Array<ArrayBuffer>;
  readonly sealed: Uint8Array<ArrayBuffer>;
}

function open() {
  return openDB(DB, 1, {
    upgrade(db) {
      db.createObjectStore(STORE);
    },
  });
}

export async function loadSecrets(): Promise<Uint8Array | undefined> {
  const db = await open();
  try {
    const saved = (await db.get(STORE, KEY)) as Saved | undefined;
    if (saved === undefined) return undefined;
    try {
      const plain = await crypto.subtle.decrypt(
        { name: 'AES-GCM', iv: saved.nonce },
        saved.key,
        saved.sealed,
      );
      return new Uint8Array(plain);
    } catch {
      throw new StorageError('corrupt', 'the saved identity does not decrypt');
    }
  } finally {
    db.close();
  }
}

export async function saveSecrets(payload: Uint8Array): Promise<void> {
  const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, [
    'encrypt',
    'decrypt',
  ]);
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce }, key, Uint8Array.from(payload)),
  );
  const db = await open();
  try {
    const saved: Saved = { key, nonce, sealed };
    await db.put(STORE, saved, KEY);
  } finally {
    db.close();
  }
}

import { describe, expect, it } from 'vitest';
import { inviteAddress, shortcutField } from './launch.js';

describe('the launch URL', () => {
  it('turns a protocol-handler invite into the #join= form the app joins from', () => {
    const link = 'web+conclave://join/AQIDBAUG-_x';
    expect(inviteAddress('/', `?invite=${encodeURIComponent(link)}`)).toBe('/#join=AQIDBAUG-_x');
    expect(inviteAddress('/', '?invite=conclave%3A%2F%2Fjoin%2FAbc')).toBe('/#join=Abc');
  });
  it('leaves anything else alone', () => {
    expect(inviteAddress('/', '')).toBeUndefined();
    expect(inviteAddress('/', '?invite=https%3A%2F%2Fevil.example%2F')).toBeUndefined();
    expect(inviteAddress('/', '?invite=web%2Bconclave%3A%2F%2Fjoin%2Fa%22b')).toBeUndefined();
  });
  it('names the field each shortcut asks for', () => {
    expect(shortcutField('?do=join')).toBe('Invite link');
    expect(shortcutField('?do=message')).toBe('Message');
    expect(shortcutField('?do=other')).toBeUndefined();
    expect(shortcutField('')).toBeUndefined();
  });
});

import { describe, expect, it } from 'vitest';
import { chooseHost } from './platform.js';

describe('chooseHost', () => {
  it('runs the dedicated worker in the Android app, even where its WebView offers SharedWorker', () => {
    expect(chooseHost('android', true)).toBe('dedicated');
    expect(chooseHost('android', false)).toBe('dedicated');
  });
  it('runs one SharedWorker in the iOS app and in browsers that have it, else the dedicated worker', () => {
    expect(chooseHost('ios', true)).toBe('shared');
    expect(chooseHost('web', true)).toBe('shared');
    expect(chooseHost('ios', false)).toBe('dedicated');
    expect(chooseHost('web', false)).toBe('dedicated');
  });
});

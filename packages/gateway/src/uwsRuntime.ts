import uWS from 'uWebSockets.js';

/**
 * uWebSockets.js as loaded. The package falls back to a slow pure-JS implementation when its
 * native binary does not match this Node ABI; that must never reach production unnoticed.
 */
export const uws = uWS;
export const uwsIsNative: boolean = /\[native code\]/.test(Function.prototype.toString.call(uWS.App));

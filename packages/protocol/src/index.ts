export * from './errors.js';
export * from './limits.js';
export * from './closeCodes.js';
export * from './paths.js';
export * from './chunker.js';
export * from './gear.js';
export * from './manifest.js';
export * from './messages.js';
export * from './codec.js';
export * from './ignores.js';
export * from './crashPoints.js';
export * from './parallel.js';

/** This build's version, shown in status and hello. */
export const KEEPSYNC_VERSION = '0.1.0';

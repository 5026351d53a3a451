export { ClientHome, defaultHome, type Pairing, type SyncState } from './home.js';
export { pairDevice, parsePairingLink, type PairOptions } from './pair.js';
export { runSync, type SyncOptions } from './SyncClient.js';
export { LocalIndex } from './index/LocalIndex.js';
export { plan, type Action, type LocalView, type PathStates } from './sync/planner.js';
export type { RemoteRecord, SyncedRecord } from './index/LocalIndex.js';
export { Connection } from './transport/Connection.js';
export { pinnedJson } from './transport/pinnedTls.js';

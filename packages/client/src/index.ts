export { ClientHome, defaultHome, type Pairing, type SyncState } from './home.js';
export { pairDevice, parsePairingLink, type PairOptions } from './pair.js';
export { runSync, type SyncOptions } from './SyncClient.js';
export { LocalIndex } from './index/LocalIndex.js';
export { plan, type Action, type PathStates } from './sync/planner.js';
export { Connection } from './transport/Connection.js';
export { pinnedJson } from './transport/pinnedTls.js';
export { ServerFolder, type RestoreAnswer } from './ServerFolder.js';

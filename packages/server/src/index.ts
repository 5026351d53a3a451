export { FsContentStore } from "./storage/FsContentStore.js";
export type { ContentStore } from "./storage/ContentStore.js";
export { openDatabase } from "./storage/db.js";
export { startServer, type RunningServer } from './startServer.js';
export { resolveConfig, type ServerConfig } from './config.js';

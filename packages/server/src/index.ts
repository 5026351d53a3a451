export { FsContentStore } from "./storage/FsContentStore.js";
export type { ContentStore } from "./storage/ContentStore.js";
export { openDatabase } from "./storage/db.js";

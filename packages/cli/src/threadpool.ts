/**
 * Node runs file-system calls on a pool of four threads by default; syncing
 * thousands of small files keeps more than four busy (opens, writes, fsyncs).
 * Imported first by main, before anything starts the pool.
 */
process.env.UV_THREADPOOL_SIZE ??= '16';

export {};

/** OS and editor junk never synced, in gitignore syntax. */
export const DEFAULT_IGNORES: readonly string[] = [
  '.DS_Store',
  '._*',
  '.Spotlight-V100',
  '.Trashes',
  '.fseventsd',
  'Thumbs.db',
  'ehthumbs.db',
  'desktop.ini',
  '$RECYCLE.BIN/',
  '~$*',
  '.~lock.*#',
  '*.swp',
  '*.swx',
  '*.swo',
  '*~',
  '.#*',
  // Downloads in progress (Chrome, Firefox, other tools): the finished file, renamed from them, syncs.
  '*.crdownload',
  '*.part',
  '*.filepart',
  '.keepsync-*',
];

/** The ignore file read from a folder's root. */
export const IGNORE_FILE = '.keepsyncignore';

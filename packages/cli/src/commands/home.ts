import { ClientHome, defaultHome } from '@keepsync/client';

/** The device home from --home, KEEPSYNC_HOME or the default. */
export function homeFrom(flag: string | undefined): ClientHome {
  return new ClientHome(flag ? flag : defaultHome());
}

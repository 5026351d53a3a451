// The folder pickers of the Files and Trash tabs.

import { request } from './api.js';
import { el, fill } from './dom.js';

/** Fills `select` with the server's folders, keeping the chosen one; answers the folders. */
export async function loadFolders(select) {
  const folders = await request('GET', '/folders');
  const chosen = select.value;
  fill(select, folders.map((f) => el('option', { value: String(f.id), text: f.name })));
  if (folders.some((f) => String(f.id) === chosen)) select.value = chosen;
  select.closest('label').hidden = folders.length < 2;
  return folders;
}

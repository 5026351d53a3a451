import { KeepsyncError } from '@keepsync/protocol';

export default async function run(_argv: string[]): Promise<number> {
  throw new KeepsyncError('UNAVAILABLE', 'this command is not available in this build yet');
}

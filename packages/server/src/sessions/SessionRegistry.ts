import { CloseCode } from '@keepsync/protocol';
import type { DeviceSession } from './DeviceSession.js';

/**
 * The live device connections. Answers who is online, tells the sessions of
 * a folder about changes, and cuts a removed device off at once.
 */
export class SessionRegistry {
  private readonly byDevice = new Map<number, Set<DeviceSession>>();

  add(session: DeviceSession): void {
    let set = this.byDevice.get(session.device.id);
    if (!set) this.byDevice.set(session.device.id, (set = new Set()));
    set.add(session);
  }

  delete(session: DeviceSession): void {
    const set = this.byDevice.get(session.device.id);
    set?.delete(session);
    if (set?.size === 0) this.byDevice.delete(session.device.id);
  }

  /** The device's live connections, oldest first. */
  sessionsOf(deviceId: number): DeviceSession[] {
    return [...(this.byDevice.get(deviceId) ?? [])].filter((s) => !s.closed);
  }

  isOnline(deviceId: number): boolean {
    return this.byDevice.has(deviceId);
  }

  online(): number {
    return this.byDevice.size;
  }

  /** Closes every connection of a removed device with TOKEN_REVOKED. */
  disconnect(deviceId: number): void {
    for (const s of this.byDevice.get(deviceId) ?? []) s.close(CloseCode.TOKEN_REVOKED, 'device removed');
    this.byDevice.delete(deviceId);
  }

  notifyFolder(folderId: number, seq: number): void {
    for (const set of this.byDevice.values()) {
      for (const s of set) if (s.folder.id === folderId) s.notifyChanged(seq);
    }
  }

  closeAll(code: number = CloseCode.SHUTDOWN, reason = 'server shutting down'): void {
    for (const set of this.byDevice.values()) for (const s of set) s.close(code, reason);
    this.byDevice.clear();
  }
}

/**
 * The files Docker bind-mounts into every container: /etc/hostname, /etc/hosts and
 * /etc/resolv.conf, made for the container's hostname and the host's resolvers.
 */
import { readFileSync } from 'node:fs';

export interface EtcFile {
  destination: string;
  content: string;
}

export const ETC_FILE_PATHS = ['etc/hostname', 'etc/hosts', 'etc/resolv.conf'];

export function etcFiles(hostname: string): EtcFile[] {
  let resolv = '';
  try {
    // The host's resolvers, minus loopback ones that mean nothing in another network namespace.
    resolv = readFileSync('/etc/resolv.conf', 'utf8').split('\n').filter((l) => !/^\s*nameserver\s+(127\.|::1)/.test(l)).join('\n');
  } catch {
    // No resolv.conf on the host: an empty one.
  }
  return [
    { destination: '/etc/hostname', content: `${hostname}\n` },
    { destination: '/etc/hosts', content: `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t${hostname}\n` },
    { destination: '/etc/resolv.conf', content: resolv },
  ];
}

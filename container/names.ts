/** Container names as Docker makes them when none is given: adjective_surname. */
import { randomInt } from 'node:crypto';

const ADJECTIVES = [
  'agile', 'bold', 'brave', 'calm', 'clever', 'eager', 'fervent', 'gentle', 'happy', 'jolly', 'keen',
  'lucid', 'modest', 'nifty', 'patient', 'quirky', 'serene', 'sharp', 'stoic', 'tender', 'vivid', 'zealous',
];
const SURNAMES = [
  'babbage', 'curie', 'dijkstra', 'euler', 'feynman', 'goldberg', 'hopper', 'hypatia', 'knuth', 'lamport',
  'liskov', 'lovelace', 'mccarthy', 'noether', 'pike', 'ritchie', 'shannon', 'thompson', 'torvalds', 'turing',
];

export function randomName(taken: Set<string>): string {
  for (let tries = 0; ; tries++) {
    const name = `${ADJECTIVES[randomInt(ADJECTIVES.length)]}_${SURNAMES[randomInt(SURNAMES.length)]}`;
    if (!taken.has(name)) return name;
    // Docker appends a digit once the plain pairs run out; a longer number once those do too.
    const numbered = `${name}${randomInt(tries < 100 ? 10 : 1_000_000)}`;
    if (!taken.has(numbered)) return numbered;
  }
}

/** Docker's rule for names: [a-zA-Z0-9][a-zA-Z0-9_.-]* */
export function validName(name: string): boolean {
  return /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(name);
}

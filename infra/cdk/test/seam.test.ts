// The seam between the stack and the Rust entries, read from both sides:
// every variable a function's entry reads (lambda/src) is one the stack
// sets on that function, and every variable the stack sets is one some
// entry reads. A name changed on one side only fails here, not on AWS.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { BINARIES } from '../lib/tally-stack';
import { functionId, SCHEMAS_DIR, synth } from './support';

const LAMBDA_SRC = path.join(SCHEMAS_DIR, '..', '..', 'lambda', 'src');

/** Variables set by Lambda itself or for emulators only, never by the stack. */
const NOT_THE_STACKS = new Set(['AWS_LAMBDA_RUNTIME_API', 'AWS_LAMBDA_FUNCTION_NAME', 'AWS_LAMBDA_FUNCTION_VERSION', 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE', 'TALLY_DYNAMODB_ENDPOINT']);

/** The `TALLY_*` names a Rust source file spells. */
function tallyVariables(file: string): Set<string> {
  const text = fs.readFileSync(path.join(LAMBDA_SRC, file), 'utf8');
  return new Set([...text.matchAll(/"(TALLY_[A-Z_]+)"/g)].map((m) => m[1]).filter((v) => !NOT_THE_STACKS.has(v)));
}

describe('the stack and the Rust entries', () => {
  const s = synth();
  const env = (id: string): Record<string, unknown> =>
    s.resources[functionId(s, id)].Properties.Environment.Variables;
  const shared = tallyVariables('lib.rs');
  const own: Record<string, Set<string>> = {
    Api: tallyVariables('api.rs'),
    ProjectorStreams: tallyVariables('projection.rs'),
    Replenisher: tallyVariables('replenisher.rs'),
  };

  it('the sources were read', () => {
    assert.ok(shared.has('TALLY_TABLE_PREFIX'), [...shared].join(' '));
    assert.ok(own.Api.has('TALLY_COGNITO_ISSUER'), [...own.Api].join(' '));
  });

  it('every variable an entry reads is set on its function', () => {
    for (const [id, vars] of Object.entries(own)) {
      for (const name of [...shared, ...vars]) {
        assert.ok(name in env(id), `${id} reads ${name}, which the stack does not set`);
      }
    }
  });

  it('every TALLY_ variable the stack sets is read by the entry', () => {
    for (const [id, vars] of Object.entries(own)) {
      for (const name of Object.keys(env(id)).filter((n) => n.startsWith('TALLY_'))) {
        assert.ok(shared.has(name) || vars.has(name), `${id} is given ${name}, which its entry never reads`);
      }
    }
  });

  it('every binary the stack deploys is a binary of the lambda crate', () => {
    const bins = fs.readdirSync(path.join(LAMBDA_SRC, 'bin')).map((f) => f.replace(/\.rs$/, ''));
    for (const binary of Object.values(BINARIES)) {
      assert.ok(bins.includes(binary), `${binary} is not in lambda/src/bin (${bins.join(', ')})`);
    }
  });
});

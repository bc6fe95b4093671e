// What a deployment can choose, from the CDK context (`-c key=value` or
// cdk.json), with the defaults a first deployment needs. Nothing here looks
// anything up in an AWS account, so synth needs no credentials.

import type { Node } from 'constructs';

/** Where the Lambda functions' code comes from. */
export type Assets =
  /** The packaged zips when they exist, the placeholder otherwise (with a warning). */
  | 'auto'
  /** The packaged zips; synth fails when one is missing (use this to deploy). */
  | 'packaged'
  /** The placeholder for every function (tests, and synth without the Rust build). */
  | 'placeholder';

export interface Settings {
  /** Prefix of every table name (context `tablePrefix`, default `tally-`). */
  readonly tablePrefix: string;
  /** The stack's name (context `stackName`; default `Tally`, or `Tally-<prefix>` for another prefix). */
  readonly stackName: string;
  /** Project through Kinesis Data Streams for DynamoDB instead of DynamoDB Streams (context `kinesis`). */
  readonly kinesis: boolean;
  /** Shards of that Kinesis stream (context `kinesisShards`, default 1). */
  readonly kinesisShards: number;
  /** See {@link Assets} (context `assets`, default `auto`). */
  readonly assets: Assets;
  /** Reserved concurrency of the replenisher (context `replenisherConcurrency`, default 1; `none` for none). */
  readonly replenisherConcurrency?: number;
  /** An address subscribed to the alarm topic (context `alarmEmail`). */
  readonly alarmEmail?: string;
  /** Account and region (contexts `account`, `region`); unset, the stack is environment-agnostic. */
  readonly account?: string;
  readonly region?: string;
}

export const DEFAULT_TABLE_PREFIX = 'tally-';

function text(node: Node, key: string): string | undefined {
  const value: unknown = node.tryGetContext(key);
  if (value === undefined || value === null || value === '') {
    return undefined;
  }
  return String(value);
}

function flag(node: Node, key: string): boolean {
  const value = text(node, key);
  if (value === undefined) {
    return false;
  }
  if (['true', '1', 'yes'].includes(value.toLowerCase())) {
    return true;
  }
  if (['false', '0', 'no'].includes(value.toLowerCase())) {
    return false;
  }
  throw new Error(`context ${key}=${value}: expected true or false`);
}

function count(value: string, key: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new Error(`context ${key}=${value}: expected a whole number >= ${min}`);
  }
  return n;
}

export function settingsFromContext(node: Node): Settings {
  const tablePrefix = text(node, 'tablePrefix') ?? DEFAULT_TABLE_PREFIX;
  // Table names allow [A-Za-z0-9_.-]; the longest is `<prefix>read-models-g<N>`.
  if (!/^[A-Za-z0-9_.-]{0,200}$/.test(tablePrefix)) {
    throw new Error(`context tablePrefix=${tablePrefix}: use letters, digits, '_', '.', '-' (at most 200)`);
  }
  const assets = (text(node, 'assets') ?? 'auto') as Assets;
  if (!['auto', 'packaged', 'placeholder'].includes(assets)) {
    throw new Error(`context assets=${assets}: expected auto, packaged or placeholder`);
  }
  const concurrency = text(node, 'replenisherConcurrency') ?? '1';
  const suffix = tablePrefix.replace(/[^A-Za-z0-9-]/g, '-').replace(/^-+|-+$/g, '');
  const stackName =
    text(node, 'stackName') ?? (tablePrefix === DEFAULT_TABLE_PREFIX || suffix === '' ? 'Tally' : `Tally-${suffix}`);
  if (!/^[A-Za-z][A-Za-z0-9-]{0,127}$/.test(stackName)) {
    throw new Error(`stack name ${stackName}: start with a letter; letters, digits and '-' only`);
  }
  return {
    tablePrefix,
    stackName,
    kinesis: flag(node, 'kinesis'),
    kinesisShards: count(text(node, 'kinesisShards') ?? '1', 'kinesisShards', 1),
    assets,
    replenisherConcurrency: concurrency === 'none' ? undefined : count(concurrency, 'replenisherConcurrency', 1),
    alarmEmail: text(node, 'alarmEmail'),
    account: text(node, 'account'),
    region: text(node, 'region'),
  };
}

// The four functions, the projector's event source mapping (every setting,
// on DynamoDB Streams by default and on Kinesis when asked), the
// replenisher's schedule, and where the code comes from.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { BINARIES, REPLENISH_SCHEDULE } from '../lib/tally-stack';
import { functionId, ofType, render, SCHEMAS, SCHEMAS_DIR, synth, Synth, tableNamed, tempDir } from './support';

function fn(s: Synth, id: string) {
  return s.resources[functionId(s, id)].Properties;
}

function assertRustFunction(s: Synth, id: string) {
  const p = fn(s, id);
  assert.equal(p.Runtime, 'provided.al2023', `${id}: runtime`);
  assert.deepEqual(p.Architectures, ['arm64'], `${id}: arm64`);
  assert.equal(p.Handler, 'bootstrap', `${id}: handler`);
  assert.equal(p.LoggingConfig.LogFormat, 'JSON', `${id}: JSON logs`);
  assert.equal(p.Environment.Variables.TALLY_TABLE_PREFIX, s.prefix, `${id}: table prefix`);
  assert.equal(p.Environment.Variables.RUST_LOG, 'info', `${id}: RUST_LOG`);
  return p;
}

/** The one event source mapping, and the function it feeds. */
function mapping(s: Synth) {
  const mappings = ofType(s, 'AWS::Lambda::EventSourceMapping');
  assert.equal(mappings.length, 1, 'one event source mapping');
  return mappings[0][1].Properties;
}

function assertMappingSettings(s: Synth, sourceArn: string) {
  const m = mapping(s);
  assert.equal(render(m.EventSourceArn), sourceArn, 'the source');
  assert.equal(m.Enabled, true);
  assert.equal(m.StartingPosition, 'TRIM_HORIZON', 'from the oldest record');
  assert.equal(m.BatchSize, 100, 'batch size');
  assert.equal(m.MaximumBatchingWindowInSeconds, 0, 'no batching window');
  assert.deepEqual(m.FunctionResponseTypes, ['ReportBatchItemFailures'], 'partial batch responses');
  assert.equal(m.BisectBatchOnFunctionError, true, 'bisect on error');
  assert.equal(m.ParallelizationFactor, 1, 'one batch per shard at a time');
  assert.ok(Number.isInteger(m.MaximumRetryAttempts), 'retries bounded');
  assert.ok(m.MaximumRetryAttempts >= 1 && m.MaximumRetryAttempts <= 10, `retries ${m.MaximumRetryAttempts}`);
  assert.ok(
    m.MaximumRecordAgeInSeconds >= 60 && m.MaximumRecordAgeInSeconds <= 12 * 3600,
    `record age ${m.MaximumRecordAgeInSeconds}s: bounded, well under the 24 h retention`,
  );
  // The on-failure destination is the encrypted DLQ.
  const [queueId, queue] = ofType(s, 'AWS::SQS::Queue')[0];
  assert.equal(render(m.DestinationConfig.OnFailure.Destination), `\${${queueId}.Arn}`);
  assert.equal(queue.Properties.SqsManagedSseEnabled, true, 'the DLQ is encrypted');
  return m;
}

describe('functions', () => {
  const s = synth();

  it('the API: binary, Cognito settings, memory and timeout', () => {
    const p = assertRustFunction(s, 'Api');
    const env = p.Environment.Variables;
    const [poolId] = ofType(s, 'AWS::Cognito::UserPool')[0];
    const [clientId] = ofType(s, 'AWS::Cognito::UserPoolClient')[0];
    assert.equal(render(env.TALLY_COGNITO_ISSUER), `https://cognito-idp.\${AWS::Region}.amazonaws.com/\${${poolId}}`);
    assert.equal(render(env.TALLY_COGNITO_CLIENT_ID), `\${${clientId}}`);
    assert.equal(env.TALLY_COGNITO_TOKEN_USE, 'id');
    assert.equal(env.AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH, 'true');
    assert.equal(p.MemorySize, 512);
    assert.ok(p.Timeout >= 5 && p.Timeout <= 15, `timeout ${p.Timeout}`);
  });

  it('the replenisher runs hourly, one at a time', () => {
    const p = assertRustFunction(s, 'Replenisher');
    assert.equal(p.ReservedConcurrentExecutions, 1);
    const rules = ofType(s, 'AWS::Events::Rule');
    assert.equal(rules.length, 1);
    const rule = rules[0][1].Properties;
    assert.equal(rule.ScheduleExpression, REPLENISH_SCHEDULE);
    assert.equal(rule.ScheduleExpression, 'cron(5 * * * ? *)', 'every hour, so every time zone’s midnight');
    assert.equal(rule.State, 'ENABLED');
    assert.equal(render(rule.Targets[0].Arn), `\${${functionId(s, 'Replenisher')}.Arn}`);
    assert.equal(synth({ replenisherConcurrency: 'none' }).resources[functionId(s, 'Replenisher')].Properties.ReservedConcurrentExecutions, undefined);
  });

  it('the projector on DynamoDB Streams, every mapping setting explicit', () => {
    assertRustFunction(s, 'ProjectorStreams');
    assert.equal(fn(s, 'ProjectorStreams').ReservedConcurrentExecutions, undefined, 'bounded by the shards, not reserved');
    const [eventsId] = tableNamed(s, SCHEMAS.events);
    const m = assertMappingSettings(s, `\${${eventsId}.StreamArn}`);
    assert.equal(render(m.FunctionName), `\${${functionId(s, 'ProjectorStreams')}}`);
    assert.equal(ofType(s, 'AWS::Kinesis::Stream').length, 0, 'no Kinesis stream by default');
    assert.throws(() => functionId(s, 'ProjectorKinesis'), /found 0/);
  });

  it('the projector on Kinesis Data Streams for DynamoDB, when kinesis=true', () => {
    const k = synth({ kinesis: 'true' });
    assertRustFunction(k, 'ProjectorKinesis');
    assert.throws(() => functionId(k, 'ProjectorStreams'), /found 0/);
    const streams = ofType(k, 'AWS::Kinesis::Stream');
    assert.equal(streams.length, 1);
    const [streamId, stream] = streams[0];
    assert.equal(stream.Properties.StreamEncryption.EncryptionType, 'KMS');
    const [, events] = tableNamed(k, SCHEMAS.events);
    assert.equal(render(events.Properties.KinesisStreamSpecification.StreamArn), `\${${streamId}.Arn}`);
    const m = assertMappingSettings(k, `\${${streamId}.Arn}`);
    assert.equal(render(m.FunctionName), `\${${functionId(k, 'ProjectorKinesis')}}`);
    // The table keeps the stream its definition asks for.
    assert.deepEqual(events.Properties.StreamSpecification, SCHEMAS.events.StreamSpecification);
  });

  it('tests and synth without the Rust build use the placeholder; packaged zips when present', () => {
    const placeholderCode = fn(s, 'Api').Code;
    for (const id of ['Replenisher', 'ProjectorStreams']) {
      assert.deepEqual(fn(s, id).Code, placeholderCode, `${id}: the placeholder`);
    }
    // A repository root with only the API packaged.
    const root = tempDir('tally-root-');
    const zipDir = path.join(root, 'target', 'lambda', BINARIES.api);
    fs.mkdirSync(zipDir, { recursive: true });
    fs.writeFileSync(path.join(zipDir, 'bootstrap.zip'), 'PK\u0005\u0006' + '\u0000'.repeat(18));
    const auto = synth({ assets: 'auto' }, { schemasDir: SCHEMAS_DIR, repoRoot: root });
    assert.notDeepEqual(fn(auto, 'Api').Code, placeholderCode, 'the packaged zip');
    assert.deepEqual(fn(auto, 'Replenisher').Code, placeholderCode, 'the placeholder where no zip');
    Annotations.fromStack(auto.stack).hasWarning('*', Match.stringLikeRegexp('tally-replenisher.*placeholder'));
    assert.throws(
      () => synth({ assets: 'packaged' }, { schemasDir: SCHEMAS_DIR, repoRoot: root }),
      /tally-replenisher\/bootstrap.zip is missing: run scripts\/package first/,
    );
    const forced = synth({ assets: 'placeholder' }, { schemasDir: SCHEMAS_DIR, repoRoot: root });
    assert.deepEqual(fn(forced, 'Api').Code, placeholderCode, 'assets=placeholder ignores the zips');
  });

  it('the placeholder fails loudly', () => {
    const bootstrap = path.join(__dirname, '..', '..', 'placeholder', 'bootstrap');
    const text = fs.readFileSync(bootstrap, 'utf8');
    assert.match(text, /^#!\/bin\/sh/);
    assert.match(text, /exit 1/);
    assert.ok((fs.statSync(bootstrap).mode & 0o111) !== 0, 'executable');
  });

  it('refuses a context it does not understand', () => {
    assert.throws(() => synth({ kinesis: 'maybe' }), /kinesis=maybe/);
    assert.throws(() => synth({ assets: 'docker' }), /assets=docker/);
    assert.throws(() => synth({ tablePrefix: 'bad prefix' }), /tablePrefix/);
  });
});

// Least privilege, both ways: each role gets exactly the DynamoDB actions
// its code calls (ledger-store/src/dynamodb/), and what must be absent is
// checked by name: Scan anywhere but the replay role, a read-model write
// from the API or the replenisher, an event-table write from a projector.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TENANTS_INDEX } from '../lib/tally-stack';
import {
  allows,
  dynamoLines,
  functionRole,
  grants,
  lines,
  ofType,
  render,
  roles,
  SCHEMAS,
  synth,
  Synth,
  tableArn,
  tableNamed,
} from './support';

const READ = ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:Query'];
const APPEND = ['dynamodb:PutItem', 'dynamodb:ConditionCheckItem'];
const VIEW_WRITE = [
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:BatchWriteItem',
  'dynamodb:ConditionCheckItem',
];
const ANY_WRITE = [...VIEW_WRITE, 'dynamodb:PartiQLInsert', 'dynamodb:PartiQLUpdate', 'dynamodb:PartiQLDelete'];

function arns(s: Synth) {
  const events = tableArn(`${s.prefix}${SCHEMAS.events.TableName}`);
  const first = tableArn(`${s.prefix}${SCHEMAS.readModels.TableName}`);
  const generations = tableArn(`${s.prefix}${SCHEMAS.readModels.TableName}-g*`);
  return {
    events,
    eventsIndexes: `${events}/index/*`,
    tenants: `${events}/index/${TENANTS_INDEX}`,
    first,
    generations,
    readModels: [first, `${first}/index/*`, generations, `${generations}/index/*`],
    // Concrete resources a request would name.
    sampleReadModels: [
      first,
      ...(SCHEMAS.readModels.GlobalSecondaryIndexes ?? []).map((i) => `${first}/index/${i.IndexName}`),
      tableArn(`${s.prefix}${SCHEMAS.readModels.TableName}-g2`),
      tableArn(`${s.prefix}${SCHEMAS.readModels.TableName}-g17`),
      `${tableArn(`${s.prefix}${SCHEMAS.readModels.TableName}-g2`)}/index/listing`,
    ],
  };
}

function replayRole(s: Synth): string {
  const found = roles(s).filter((id) => id.startsWith('ReplayRole'));
  assert.equal(found.length, 1);
  return found[0];
}

for (const [variant, context] of [
  ['DynamoDB Streams', {}],
  ['Kinesis', { kinesis: 'true' }],
  ['another prefix', { tablePrefix: 'acme-' }],
] as const) {
  describe(`IAM (${variant})`, () => {
    const s = synth(context);
    const a = arns(s);
    const projectorId = 'kinesis' in context ? 'ProjectorKinesis' : 'ProjectorStreams';

    it('the API appends to the log and reads the read models, nothing else', () => {
      const g = grants(s, functionRole(s, 'Api'));
      assert.deepEqual(
        dynamoLines(g),
        [...lines([...READ, ...APPEND, 'dynamodb:DescribeTable'], [a.events]), ...lines(READ, a.readModels)].sort(),
      );
      for (const resource of a.sampleReadModels) {
        for (const action of READ) {
          assert.ok(allows(g, action, resource), `API may ${action} ${resource}`);
        }
        for (const action of ANY_WRITE) {
          assert.ok(!allows(g, action, resource), `API must not ${action} ${resource}`);
        }
      }
      assert.ok(!allows(g, 'dynamodb:UpdateItem', a.events), 'events are only ever put');
      assert.ok(!allows(g, 'dynamodb:DeleteItem', a.events), 'events are never deleted');
    });

    it('the replenisher: the API’s rights and the tenants index', () => {
      const g = grants(s, functionRole(s, 'Replenisher'));
      assert.deepEqual(
        dynamoLines(g),
        [
          ...lines([...READ, ...APPEND, 'dynamodb:DescribeTable'], [a.events]),
          ...lines(['dynamodb:Query'], [a.tenants]),
          ...lines(READ, a.readModels),
        ].sort(),
      );
      for (const resource of a.sampleReadModels) {
        for (const action of ANY_WRITE) {
          assert.ok(!allows(g, action, resource), `replenisher must not ${action} ${resource}`);
        }
      }
    });

    it('the projector writes the read models, reads its stream, reports failures, and never touches the log', () => {
      const g = grants(s, functionRole(s, projectorId));
      const stream = 'kinesis' in context ? undefined : render({ 'Fn::GetAtt': [tableNamed(s, SCHEMAS.events)[0], 'StreamArn'] });
      const expected = lines([...READ, ...VIEW_WRITE], a.readModels);
      if (stream) {
        expected.push(
          ...lines(['dynamodb:DescribeStream', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator', 'dynamodb:ListStreams'], [stream]),
        );
      }
      assert.deepEqual(dynamoLines(g), expected.sort());
      for (const action of [...ANY_WRITE, ...READ, 'dynamodb:Scan']) {
        assert.ok(!allows(g, action, a.events), `projector must not ${action} the event table`);
      }
      const [queueId] = ofType(s, 'AWS::SQS::Queue')[0];
      const sqs = g.filter((x) => x.action.startsWith('sqs:'));
      assert.deepEqual(sqs, [{ action: 'sqs:SendMessage', resource: `\${${queueId}.Arn}` }]);
      const kinesis = g.filter((x) => x.action.startsWith('kinesis:'));
      if ('kinesis' in context) {
        const [streamId] = ofType(s, 'AWS::Kinesis::Stream')[0];
        assert.ok(kinesis.length > 0);
        for (const x of kinesis) {
          assert.equal(x.resource, `\${${streamId}.Arn}`, `${x.action} scoped to the stream`);
          assert.match(x.action, /^kinesis:(Describe|Get|List)/, 'reads only');
        }
      } else {
        assert.deepEqual(kinesis, []);
      }
    });

    it('the replay role reads everything and writes only read-model generations and the pointer', () => {
      const id = replayRole(s);
      const trust = s.resources[id].Properties.AssumeRolePolicyDocument.Statement;
      assert.deepEqual(
        trust.map((t: any) => [t.Action, render(t.Principal.AWS)]),
        [['sts:AssumeRole', 'arn:${AWS::Partition}:iam::${AWS::AccountId}:root']],
      );
      const g = grants(s, id);
      assert.deepEqual(
        dynamoLines(g),
        [
          ...lines(
            ['dynamodb:Scan', 'dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:DescribeTable'],
            [a.events, a.eventsIndexes, ...a.readModels],
          ),
          ...lines(['dynamodb:CreateTable', 'dynamodb:DeleteTable', 'dynamodb:UpdateTimeToLive'], [a.generations]),
          ...lines(VIEW_WRITE, [a.generations, a.first]),
        ].sort(),
      );
      for (const action of [...ANY_WRITE, 'dynamodb:DeleteTable', 'dynamodb:UpdateTable']) {
        assert.ok(!allows(g, action, a.events), `replay must not ${action} the event table`);
      }
      assert.ok(!allows(g, 'dynamodb:DeleteTable', a.first), 'the first generation holds the pointer');
      assert.ok(!allows(g, 'dynamodb:CreateTable', a.first));
    });

    it('nobody but the replay role may Scan, and no DynamoDB grant is a wildcard', () => {
      const replay = replayRole(s);
      const targets = [a.events, a.first, ...a.sampleReadModels, 'arn:aws:dynamodb:us-east-1:123456789012:table/other'];
      for (const role of roles(s)) {
        const g = grants(s, role);
        for (const x of g) {
          assert.ok(x.resource !== '*' || !x.action.startsWith('dynamodb:'), `${role}: ${x.action} on *`);
          assert.ok(!/^dynamodb:\*|^\*$/.test(x.action), `${role}: ${x.action}`);
        }
        const scans = targets.filter((t) => allows(g, 'dynamodb:Scan', t));
        if (role === replay) {
          assert.ok(scans.length > 0, 'the replay role scans');
        } else {
          assert.deepEqual(scans, [], `${role} must not Scan`);
        }
      }
      // Only the basic execution policy (logs) is attached to the functions' roles.
      for (const role of roles(s)) {
        for (const arn of s.resources[role].Properties.ManagedPolicyArns ?? []) {
          assert.match(render(arn), /service-role\/AWSLambdaBasicExecutionRole$/, `${role}`);
        }
      }
    });
  });
}

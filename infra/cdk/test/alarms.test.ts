// The alarms: iterator age on the projector, the DLQ's depth, errors and
// throttles of every function, DynamoDB throttling, API 5XX; all to SNS.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ITERATOR_AGE_ALARM_MS } from '../lib/tally-stack';
import { functionId, ofType, render, SCHEMAS, synth, Synth, tableNamed } from './support';

function alarms(s: Synth) {
  return ofType(s, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
}

function find(s: Synth, metric: string, dimension: string, value: string) {
  return alarms(s).filter(
    (a) =>
      a.MetricName === metric &&
      (a.Dimensions ?? []).some((d: any) => d.Name === dimension && render(d.Value) === value),
  );
}

for (const [variant, context, projector] of [
  ['DynamoDB Streams', {}, 'ProjectorStreams'],
  ['Kinesis', { kinesis: 'true' }, 'ProjectorKinesis'],
] as const) {
  describe(`alarms (${variant})`, () => {
    const s = synth(context);
    const [topicId] = ofType(s, 'AWS::SNS::Topic')[0];

    it('every alarm notifies the topic', () => {
      for (const a of alarms(s)) {
        assert.deepEqual(a.AlarmActions.map(render), [`\${${topicId}}`], a.MetricName);
        assert.equal(a.TreatMissingData, 'notBreaching');
      }
    });

    it('the projector’s iterator age, well before the 24 h retention', () => {
      const found = find(s, 'IteratorAge', 'FunctionName', `\${${functionId(s, projector)}}`);
      assert.equal(found.length, 1);
      const a = found[0];
      assert.equal(a.Namespace, 'AWS/Lambda');
      assert.equal(a.Statistic, 'Maximum');
      assert.equal(a.ComparisonOperator, 'GreaterThanThreshold');
      assert.equal(a.Threshold, ITERATOR_AGE_ALARM_MS);
      assert.ok(a.Threshold <= 6 * 3600 * 1000, 'hours before records expire');
    });

    it('the DLQ is not empty', () => {
      const [queueId] = ofType(s, 'AWS::SQS::Queue')[0];
      const found = find(s, 'ApproximateNumberOfMessagesVisible', 'QueueName', `\${${queueId}.QueueName}`);
      assert.equal(found.length, 1);
      assert.equal(found[0].ComparisonOperator, 'GreaterThanThreshold');
      assert.equal(found[0].Threshold, 0);
    });

    it('errors and throttles of every function', () => {
      for (const id of ['Api', 'Replenisher', projector]) {
        for (const metric of ['Errors', 'Throttles']) {
          const found = find(s, metric, 'FunctionName', `\${${functionId(s, id)}}`);
          assert.equal(found.length, 1, `${id} ${metric}`);
          assert.equal(found[0].Statistic, 'Sum');
          assert.equal(found[0].Threshold, 0);
          assert.equal(found[0].ComparisonOperator, 'GreaterThanThreshold');
        }
      }
    });

    it('DynamoDB throttling on both tables', () => {
      for (const def of [SCHEMAS.events, SCHEMAS.readModels]) {
        const [tableId] = tableNamed(s, def);
        for (const metric of ['ReadThrottleEvents', 'WriteThrottleEvents']) {
          assert.equal(find(s, metric, 'TableName', `\${${tableId}}`).length, 1, `${def.TableName} ${metric}`);
        }
      }
    });

    it('API server errors', () => {
      assert.equal(alarms(s).filter((a) => a.MetricName === '5XXError').length, 1);
    });
  });
}

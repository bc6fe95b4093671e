// The tables are what schemas/dynamodb/ says, read at synth time: every
// comparison here is against the parsed JSON, never a restated name.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as path from 'node:path';
import { readTable, TableDefinition } from '../lib/schema';
import { SCHEMAS, schemasWith, sorted, synth, Synth, tableNamed } from './support';

function assertTableMatches(s: Synth, def: TableDefinition) {
  const [, table] = tableNamed(s, def);
  const p = table.Properties;
  assert.deepEqual(p.KeySchema, def.KeySchema, `${def.TableName}: key schema`);
  assert.deepEqual(
    sorted(p.AttributeDefinitions, (a: any) => a.AttributeName),
    sorted(def.AttributeDefinitions, (a) => a.AttributeName),
    `${def.TableName}: attribute definitions`,
  );
  const deployed = sorted(p.GlobalSecondaryIndexes ?? [], (i: any) => i.IndexName);
  const expected = sorted(def.GlobalSecondaryIndexes ?? [], (i) => i.IndexName);
  assert.deepEqual(
    deployed.map((i: any) => i.IndexName),
    expected.map((i) => i.IndexName),
    `${def.TableName}: the same indexes`,
  );
  for (const [i, index] of expected.entries()) {
    assert.deepEqual(deployed[i].KeySchema, index.KeySchema, `${def.TableName}/${index.IndexName}: key schema`);
    assert.deepEqual(deployed[i].Projection, index.Projection, `${def.TableName}/${index.IndexName}: projection`);
  }
  assert.equal(p.BillingMode, 'PAY_PER_REQUEST', `${def.TableName}: on demand`);
  assert.deepEqual(p.PointInTimeRecoverySpecification, { PointInTimeRecoveryEnabled: true }, `${def.TableName}: PITR`);
  assert.deepEqual(p.StreamSpecification, def.StreamSpecification, `${def.TableName}: stream`);
  assert.deepEqual(p.TimeToLiveSpecification, def.TimeToLiveSpecification, `${def.TableName}: TTL`);
  return p;
}

describe('tables', () => {
  const s = synth();

  it('the event table is events.json, on demand, with PITR, deletion protection and its stream', () => {
    const p = assertTableMatches(s, SCHEMAS.events);
    assert.equal(p.TableName, `tally-${SCHEMAS.events.TableName}`);
    assert.equal(p.DeletionProtectionEnabled, true);
    assert.equal(p.StreamSpecification.StreamViewType, 'NEW_IMAGE', 'the projectors read new images');
    assert.equal(p.KinesisStreamSpecification, undefined, 'no Kinesis destination unless asked');
  });

  it('the read-model table is read-models.json, with its indexes and TTL', () => {
    const p = assertTableMatches(s, SCHEMAS.readModels);
    assert.equal(p.TableName, `tally-${SCHEMAS.readModels.TableName}`);
    assert.ok((SCHEMAS.readModels.GlobalSecondaryIndexes ?? []).length > 0, 'the JSON has indexes to compare');
    assert.ok(SCHEMAS.readModels.TimeToLiveSpecification?.Enabled, 'the JSON has a TTL to compare');
  });

  it('keeps the tables when the stack goes', () => {
    for (const def of [SCHEMAS.events, SCHEMAS.readModels]) {
      const [, table] = tableNamed(s, def) as any;
      assert.equal(table.DeletionPolicy, 'Retain', `${def.TableName}`);
      assert.equal(table.UpdateReplacePolicy, 'Retain', `${def.TableName}`);
    }
  });

  it('the table prefix comes from the context', () => {
    const acme = synth({ tablePrefix: 'acme-' });
    assertTableMatches(acme, SCHEMAS.events);
    assertTableMatches(acme, SCHEMAS.readModels);
    assert.equal(tableNamed(acme, SCHEMAS.events)[1].Properties.TableName, `acme-${SCHEMAS.events.TableName}`);
  });

  it('deploys whatever indexes the JSON lists (a sparse tenants index on the event table)', () => {
    const dir = schemasWith(({ events }) => {
      events.AttributeDefinitions = [
        ...events.AttributeDefinitions.filter((a: any) => a.AttributeName !== 'registry'),
        { AttributeName: 'registry', AttributeType: 'S' },
      ];
      events.GlobalSecondaryIndexes = [
        ...(events.GlobalSecondaryIndexes ?? []).filter((i: any) => i.IndexName !== 'tenants'),
        {
          IndexName: 'tenants',
          KeySchema: [
            { AttributeName: 'registry', KeyType: 'HASH' },
            { AttributeName: 'pk', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        },
      ];
    });
    const changed = synth({}, { schemasDir: dir });
    const events = readTable(path.join(dir, 'events.json'));
    assertTableMatches(changed, events);
    assert.ok(
      tableNamed(changed, events)[1].Properties.GlobalSecondaryIndexes.some((i: any) => i.IndexName === 'tenants'),
    );
  });

  it('refuses a definition CloudFormation would refuse', () => {
    const undefinedKey = schemasWith(({ readModels }) => {
      readModels.AttributeDefinitions = readModels.AttributeDefinitions.filter((a: any) => a.AttributeName !== 'rank');
    });
    assert.throws(() => synth({}, { schemasDir: undefinedKey }), /key attribute rank has no AttributeDefinition/);
    const provisioned = schemasWith(({ events }) => {
      events.BillingMode = 'PROVISIONED';
    });
    assert.throws(() => synth({}, { schemasDir: provisioned }), /on-demand only/);
  });
});

// The table definitions of schemas/dynamodb/, read at synth time.
//
// The files are CreateTable requests (what the Rust store creates locally),
// so the deployed tables and the local ones come from the same data: the
// key schema, the attribute definitions, every global secondary index, the
// stream and the TTL attribute are taken from them, never restated here.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';

export interface AttributeDefinition {
  readonly AttributeName: string;
  readonly AttributeType: 'S' | 'N' | 'B';
}

export interface KeySchemaElement {
  readonly AttributeName: string;
  readonly KeyType: 'HASH' | 'RANGE';
}

export interface Projection {
  readonly ProjectionType: 'ALL' | 'KEYS_ONLY' | 'INCLUDE';
  readonly NonKeyAttributes?: string[];
}

export interface GlobalSecondaryIndex {
  readonly IndexName: string;
  readonly KeySchema: KeySchemaElement[];
  readonly Projection: Projection;
}

export interface TableDefinition {
  readonly TableName: string;
  readonly Description?: string;
  readonly BillingMode?: string;
  readonly AttributeDefinitions: AttributeDefinition[];
  readonly KeySchema: KeySchemaElement[];
  readonly GlobalSecondaryIndexes?: GlobalSecondaryIndex[];
  readonly LocalSecondaryIndexes?: unknown[];
  readonly StreamSpecification?: { readonly StreamViewType: string };
  readonly TimeToLiveSpecification?: { readonly AttributeName: string; readonly Enabled: boolean };
}

/** The two tables of the deployment. */
export interface Schemas {
  readonly events: TableDefinition;
  readonly readModels: TableDefinition;
}

/** Where schemas/dynamodb/ is: the first directory above `from` that has it. */
export function findSchemasDir(from: string = __dirname): string {
  let dir = path.resolve(from);
  for (;;) {
    const candidate = path.join(dir, 'schemas', 'dynamodb');
    if (fs.existsSync(path.join(candidate, 'events.json'))) {
      return candidate;
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new Error(`no schemas/dynamodb/events.json above ${from}: run from the Tally repository`);
    }
    dir = parent;
  }
}

export function readSchemas(dir: string): Schemas {
  return {
    events: readTable(path.join(dir, 'events.json')),
    readModels: readTable(path.join(dir, 'read-models.json')),
  };
}

export function readTable(file: string): TableDefinition {
  const table = JSON.parse(fs.readFileSync(file, 'utf8')) as TableDefinition;
  const where = `${file}:`;
  if (!table.TableName || !Array.isArray(table.KeySchema) || !Array.isArray(table.AttributeDefinitions)) {
    throw new Error(`${where} not a table definition (TableName, KeySchema, AttributeDefinitions)`);
  }
  if (table.BillingMode !== undefined && table.BillingMode !== 'PAY_PER_REQUEST') {
    throw new Error(`${where} BillingMode ${table.BillingMode}: the deployment is on-demand only`);
  }
  if (table.LocalSecondaryIndexes && table.LocalSecondaryIndexes.length > 0) {
    throw new Error(`${where} local secondary indexes are not deployed by this app yet`);
  }
  // Every key attribute must be defined, and every definition used: CloudFormation refuses both.
  const used = new Set<string>();
  const keys = [table.KeySchema, ...(table.GlobalSecondaryIndexes ?? []).map((i) => i.KeySchema)];
  for (const schema of keys) {
    for (const k of schema) {
      used.add(k.AttributeName);
    }
  }
  const defined = new Set(table.AttributeDefinitions.map((a) => a.AttributeName));
  for (const name of used) {
    if (!defined.has(name)) {
      throw new Error(`${where} key attribute ${name} has no AttributeDefinition`);
    }
  }
  for (const name of defined) {
    if (!used.has(name)) {
      throw new Error(`${where} AttributeDefinition ${name} is in no key schema`);
    }
  }
  return table;
}

function attributeType(table: TableDefinition, name: string): dynamodb.AttributeType {
  const def = table.AttributeDefinitions.find((a) => a.AttributeName === name);
  switch (def?.AttributeType) {
    case 'S':
      return dynamodb.AttributeType.STRING;
    case 'N':
      return dynamodb.AttributeType.NUMBER;
    case 'B':
      return dynamodb.AttributeType.BINARY;
    default:
      throw new Error(`${table.TableName}: attribute ${name} has no known AttributeType`);
  }
}

/** The partition and sort key of a key schema, typed from the table's definitions. */
export function keys(
  table: TableDefinition,
  schema: KeySchemaElement[],
): { partitionKey: dynamodb.Attribute; sortKey?: dynamodb.Attribute } {
  const hash = schema.filter((k) => k.KeyType === 'HASH');
  const range = schema.filter((k) => k.KeyType === 'RANGE');
  if (hash.length !== 1 || range.length > 1 || hash.length + range.length !== schema.length) {
    throw new Error(`${table.TableName}: a key schema needs one HASH and at most one RANGE key`);
  }
  const attr = (k: KeySchemaElement): dynamodb.Attribute => ({
    name: k.AttributeName,
    type: attributeType(table, k.AttributeName),
  });
  return { partitionKey: attr(hash[0]), sortKey: range.length ? attr(range[0]) : undefined };
}

export function streamViewType(table: TableDefinition): dynamodb.StreamViewType | undefined {
  const view = table.StreamSpecification?.StreamViewType;
  if (view === undefined) {
    return undefined;
  }
  const known = Object.values(dynamodb.StreamViewType) as string[];
  if (!known.includes(view)) {
    throw new Error(`${table.TableName}: unknown StreamViewType ${view}`);
  }
  return view as dynamodb.StreamViewType;
}

/** Adds every global secondary index the definition lists, as it lists it. */
export function addIndexes(target: dynamodb.Table, table: TableDefinition): void {
  for (const index of table.GlobalSecondaryIndexes ?? []) {
    const projection = index.Projection.ProjectionType;
    target.addGlobalSecondaryIndex({
      indexName: index.IndexName,
      ...keys(table, index.KeySchema),
      projectionType: dynamodb.ProjectionType[projection],
      nonKeyAttributes: projection === 'INCLUDE' ? index.Projection.NonKeyAttributes : undefined,
    });
  }
}

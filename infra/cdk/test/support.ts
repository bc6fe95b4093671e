// Shared by the stack tests: synthesizing a stack from a context, reading
// its template, and asking what its IAM policies allow.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { findSchemasDir, readSchemas, Schemas, TableDefinition } from '../lib/schema';
import { settingsFromContext } from '../lib/settings';
import { TallyStack } from '../lib/tally-stack';

export const SCHEMAS_DIR = findSchemasDir(__dirname);
export const SCHEMAS: Schemas = readSchemas(SCHEMAS_DIR);

export interface Synth {
  readonly stack: TallyStack;
  readonly template: Template;
  readonly json: any;
  readonly resources: Record<string, Resource>;
  readonly prefix: string;
}

export interface Resource {
  readonly Type: string;
  readonly Properties: Record<string, any>;
  readonly DependsOn?: string[];
}

/** The stack as `cdk synth -c ...` makes it, with placeholder code unless the context says otherwise. */
export function synth(
  context: Record<string, string> = {},
  options: { schemasDir?: string; repoRoot?: string } = {},
): Synth {
  // Synthesizing takes about a second: each variant once per test file.
  const key = JSON.stringify([context, options]);
  let made = synthesized.get(key);
  if (!made) {
    made = synthesize(context, options);
    synthesized.set(key, made);
  }
  return made;
}

const synthesized = new Map<string, Synth>();

function synthesize(context: Record<string, string>, options: { schemasDir?: string; repoRoot?: string }): Synth {
  const app = new App({ context: { assets: 'placeholder', ...context } });
  const settings = settingsFromContext(app.node);
  const stack = new TallyStack(app, 'Test', { settings, ...options });
  const template = Template.fromStack(stack);
  const json = template.toJSON();
  return { stack, template, json, resources: json.Resources, prefix: settings.tablePrefix };
}

const temporary: string[] = [];
process.on('exit', () => {
  for (const dir of temporary) {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** A temporary directory, removed when the test file's process exits. */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}

/** A copy of schemas/dynamodb/ in a temporary directory, changed by `edit`. */
export function schemasWith(edit: (schemas: { events: any; readModels: any }) => void): string {
  const dir = tempDir('tally-schemas-');
  const copy = JSON.parse(JSON.stringify(SCHEMAS));
  edit(copy);
  fs.writeFileSync(path.join(dir, 'events.json'), JSON.stringify(copy.events, null, 2));
  fs.writeFileSync(path.join(dir, 'read-models.json'), JSON.stringify(copy.readModels, null, 2));
  return dir;
}

export function ofType(s: Synth, type: string): [string, Resource][] {
  return Object.entries(s.resources).filter(([, r]) => r.Type === type);
}

export function tableNamed(s: Synth, def: TableDefinition): [string, Resource] {
  const name = `${s.prefix}${def.TableName}`;
  const found = ofType(s, 'AWS::DynamoDB::Table').filter(([, r]) => r.Properties.TableName === name);
  if (found.length !== 1) {
    throw new Error(`expected one table named ${name}, found ${found.length}`);
  }
  return found[0];
}

/** An intrinsic as a string: `${Logical.Attr}` for GetAtt, `${X}` for Ref, joins joined. */
export function render(value: any): string {
  if (typeof value === 'string') {
    return value;
  }
  if (value && typeof value === 'object') {
    if ('Ref' in value) {
      return `\${${value.Ref}}`;
    }
    if ('Fn::GetAtt' in value) {
      return `\${${value['Fn::GetAtt'].join('.')}}`;
    }
    if ('Fn::Join' in value) {
      const [sep, parts] = value['Fn::Join'];
      return parts.map(render).join(sep);
    }
  }
  throw new Error(`cannot render ${JSON.stringify(value)}`);
}

/** A table's ARN as the stack writes it (names, not references). */
export function tableArn(name: string): string {
  return `arn:\${AWS::Partition}:dynamodb:\${AWS::Region}:\${AWS::AccountId}:table/${name}`;
}

/** One Allow of one action on one resource. */
export interface Grant {
  readonly action: string;
  readonly resource: string;
}

const list = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Every Allow of the role's inline and attached (stack-defined) policies, one action and resource at a time. */
export function grants(s: Synth, roleId: string): Grant[] {
  const out: Grant[] = [];
  const add = (document: any) => {
    for (const st of list<any>(document.Statement)) {
      if (st.Effect !== 'Allow') {
        continue;
      }
      if (st.NotAction || st.NotResource) {
        throw new Error(`NotAction/NotResource in a policy of ${roleId}`);
      }
      for (const action of list<string>(st.Action)) {
        for (const resource of list<any>(st.Resource)) {
          out.push({ action, resource: render(resource) });
        }
      }
    }
  };
  const role = s.resources[roleId];
  for (const p of list<any>(role.Properties.Policies)) {
    add(p.PolicyDocument);
  }
  for (const [, policy] of ofType(s, 'AWS::IAM::Policy')) {
    if (list<any>(policy.Properties.Roles).some((r) => r.Ref === roleId)) {
      add(policy.Properties.PolicyDocument);
    }
  }
  return out;
}

/** The role of the function with logical id starting `id`. */
export function functionRole(s: Synth, id: string): string {
  const found = ofType(s, 'AWS::Lambda::Function').filter(([logical]) => logical.startsWith(id));
  if (found.length !== 1) {
    throw new Error(`expected one function ${id}*, found ${found.map(([l]) => l).join(', ') || 'none'}`);
  }
  return found[0][1].Properties.Role['Fn::GetAtt'][0];
}

export function functionId(s: Synth, id: string): string {
  const found = ofType(s, 'AWS::Lambda::Function').filter(([logical]) => logical.startsWith(id));
  if (found.length !== 1) {
    throw new Error(`expected one function ${id}*, found ${found.length}`);
  }
  return found[0][0];
}

function glob(pattern: string, value: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 'i').test(value);
}

/** Whether the grants allow `action` on `resource` (IAM's wildcards on both). */
export function allows(g: Grant[], action: string, resource: string): boolean {
  return g.some((x) => glob(x.action, action) && glob(x.resource, resource));
}

/** The DynamoDB grants as sorted `action resource` lines, for exact comparison. */
export function dynamoLines(g: Grant[]): string[] {
  return g
    .filter((x) => x.action.startsWith('dynamodb:'))
    .map((x) => `${x.action} ${x.resource}`)
    .sort();
}

export function lines(actions: string[], resources: string[]): string[] {
  return actions.flatMap((a) => resources.map((r) => `${a} ${r}`));
}

/** The roles of every IAM role in the stack, by logical id. */
export function roles(s: Synth): string[] {
  return ofType(s, 'AWS::IAM::Role').map(([id]) => id);
}

export const sorted = <T>(xs: T[], key: (x: T) => string = (x) => JSON.stringify(x)): T[] =>
  [...xs].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));

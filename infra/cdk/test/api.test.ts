// The REST API: every method behind the Cognito authorizer, proxied to the
// API function; the user pool's groups, attributes and app client; outputs.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GROUPS } from '../lib/tally-stack';
import { functionId, ofType, render, synth } from './support';

describe('API and users', () => {
  const s = synth();
  const [poolId, pool] = ofType(s, 'AWS::Cognito::UserPool')[0];

  it('every method is authorized by the user pool', () => {
    const authorizers = ofType(s, 'AWS::ApiGateway::Authorizer');
    assert.equal(authorizers.length, 1);
    const [authorizerId, authorizer] = authorizers[0];
    assert.equal(authorizer.Properties.Type, 'COGNITO_USER_POOLS');
    assert.deepEqual(authorizer.Properties.ProviderARNs.map(render), [`\${${poolId}.Arn}`]);
    assert.equal(authorizer.Properties.IdentitySource, 'method.request.header.Authorization');
    const methods = ofType(s, 'AWS::ApiGateway::Method');
    assert.ok(methods.length >= 2, 'the root and the proxy');
    for (const [id, method] of methods) {
      assert.equal(method.Properties.AuthorizationType, 'COGNITO_USER_POOLS', `${id}`);
      assert.equal(render(method.Properties.AuthorizerId), `\${${authorizerId}}`, `${id}`);
      assert.equal(method.Properties.Integration.Type, 'AWS_PROXY', `${id}: proxied`);
      assert.match(render(method.Properties.Integration.Uri), new RegExp(`\\$\\{${functionId(s, 'Api')}\\.Arn\\}`));
    }
    const paths = ofType(s, 'AWS::ApiGateway::Resource').map(([, r]) => r.Properties.PathPart);
    assert.deepEqual(paths, ['{proxy+}']);
    const [, api] = ofType(s, 'AWS::ApiGateway::RestApi')[0];
    assert.deepEqual(api.Properties.EndpointConfiguration.Types, ['REGIONAL']);
    assert.equal(ofType(s, 'AWS::ApiGateway::Account').length, 0, 'no account-wide logging role');
  });

  it('the user pool: groups, custom attributes, no self sign-up', () => {
    const groups = ofType(s, 'AWS::Cognito::UserPoolGroup').map(([, g]) => {
      assert.equal(render(g.Properties.UserPoolId), `\${${poolId}}`);
      return g.Properties.GroupName;
    });
    assert.deepEqual(groups.sort(), [...GROUPS].sort());
    assert.deepEqual([...GROUPS].sort(), ['Admin', 'Cashier', 'Employee', 'Service', 'Vendor']);
    const custom = Object.fromEntries(
      pool.Properties.Schema.filter((a: any) => ['tenant_id', 'vendor_id', 'employee_id'].includes(a.Name)).map(
        (a: any) => [a.Name, a],
      ),
    );
    assert.deepEqual(Object.keys(custom).sort(), ['employee_id', 'tenant_id', 'vendor_id']);
    for (const a of Object.values<any>(custom)) {
      assert.equal(a.AttributeDataType, 'String');
    }
    assert.equal(custom.tenant_id.Mutable, false, 'a user never changes tenant');
    assert.equal(pool.Properties.AdminCreateUserConfig.AllowAdminCreateUserOnly, true);
  });

  it('the app client: no secret, password and SRP flows, custom attributes readable but not writable', () => {
    const [, client] = ofType(s, 'AWS::Cognito::UserPoolClient')[0];
    const p = client.Properties;
    assert.equal(p.GenerateSecret, false);
    assert.deepEqual(
      [...p.ExplicitAuthFlows].sort(),
      ['ALLOW_REFRESH_TOKEN_AUTH', 'ALLOW_USER_PASSWORD_AUTH', 'ALLOW_USER_SRP_AUTH'],
    );
    for (const name of ['custom:tenant_id', 'custom:vendor_id', 'custom:employee_id']) {
      assert.ok(p.ReadAttributes.includes(name), `${name} readable`);
    }
    assert.ok(Array.isArray(p.WriteAttributes), 'write attributes are listed, not all by default');
    assert.deepEqual(
      p.WriteAttributes.filter((a: string) => a.startsWith('custom:')),
      [],
      'no custom attribute is user-writable',
    );
  });

  it('outputs the API URL, pool and client ids', () => {
    const outputs = s.json.Outputs;
    for (const name of ['ApiUrl', 'UserPoolId', 'UserPoolClientId', 'ReplayRoleArn']) {
      assert.ok(outputs[name], `output ${name}`);
    }
    assert.equal(render(outputs.UserPoolId.Value), `\${${poolId}}`);
  });
});

#!/usr/bin/env node
// The CDK app: one stack, configured from the context (see lib/settings.ts).
import { App } from 'aws-cdk-lib';
import { settingsFromContext } from '../lib/settings';
import { TallyStack } from '../lib/tally-stack';

const app = new App();
const settings = settingsFromContext(app.node);
new TallyStack(app, settings.stackName, {
  settings,
  description: `Tally: event-sourced ledger (tables ${settings.tablePrefix}*)`,
  // Only what the context names: no credentials or lookups are needed to synth.
  env: settings.account || settings.region ? { account: settings.account, region: settings.region } : undefined,
});

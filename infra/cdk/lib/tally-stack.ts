// Tally on AWS: the event table and the read-model table (from
// schemas/dynamodb/), the four Lambda functions, the REST API behind a
// Cognito user pool, least-privilege IAM and the alarms.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Annotations, CfnOutput, Duration, Stack, StackProps } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { addIndexes, findSchemasDir, keys, readSchemas, streamViewType, TableDefinition } from './schema';
import { Settings } from './settings';

/** The Lambda binaries, as `scripts/package` (cargo-lambda) lays them out. */
export const BINARIES = {
  api: 'tally-api',
  projectorStreams: 'projector-streams',
  projectorKinesis: 'projector-kinesis',
  replenisher: 'tally-replenisher',
} as const;

/** The event table's index of tenants the replenisher walks (sparse: only tenant items carry `registry`). */
export const TENANTS_INDEX = 'tenants';

/**
 * The event source mapping of either projector. Every setting is explicit:
 * the service's defaults (retry until the record expires, no bisecting,
 * whole-batch failures) would let one poison record block a shard for the
 * stream's whole 24 h retention.
 */
export const MAPPING = {
  startingPosition: lambda.StartingPosition.TRIM_HORIZON,
  batchSize: 100,
  maxBatchingWindow: Duration.seconds(0),
  reportBatchItemFailures: true,
  bisectBatchOnError: true,
  retryAttempts: 10,
  maxRecordAge: Duration.hours(6),
  // Order is kept per shard only at 1 (the projector gates on stream versions either way).
  parallelizationFactor: 1,
} as const;

/** A projector's iterator age (ms) that alarms: far ahead of the stream's 24 h retention. */
export const ITERATOR_AGE_ALARM_MS = 60 * 60 * 1000;

/** The EventBridge schedule of the replenisher: every hour, at five past. */
export const REPLENISH_SCHEDULE = 'cron(5 * * * ? *)';

/** The Cognito groups, one per role of the API. */
export const GROUPS = ['Admin', 'Vendor', 'Cashier', 'Employee', 'Service'] as const;

export interface TallyStackProps extends StackProps {
  readonly settings: Settings;
  /** schemas/dynamodb/ (default: found above this file). */
  readonly schemasDir?: string;
  /** Where target/lambda/<binary>/bootstrap.zip is looked for (default: the repository root). */
  readonly repoRoot?: string;
}

/**
 * An on-failure destination that only names the queue: the function's
 * `sqs:SendMessage` is written out with its other statements, not granted
 * behind its back.
 */
class QueueDestination implements lambda.IEventSourceDlq {
  constructor(private readonly queue: sqs.IQueue) {}

  bind(): lambda.DlqDestinationConfig {
    return { destination: this.queue.queueArn };
  }
}

const DYNAMO_READ = ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:Query'];
const EVENT_APPEND = ['dynamodb:PutItem', 'dynamodb:ConditionCheckItem'];
const VIEW_WRITE = [
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:BatchWriteItem',
  'dynamodb:ConditionCheckItem',
];

export class TallyStack extends Stack {
  readonly eventsTable: dynamodb.Table;
  readonly readModelsTable: dynamodb.Table;
  readonly functions: Record<string, lambda.Function> = {};
  readonly replayRole: iam.Role;
  readonly alarmTopic: sns.Topic;

  constructor(scope: Construct, id: string, props: TallyStackProps) {
    super(scope, id, props);
    const { settings } = props;
    const schemasDir = props.schemasDir ?? findSchemasDir();
    const repoRoot = props.repoRoot ?? path.dirname(path.dirname(schemasDir));
    const schemas = readSchemas(schemasDir);
    const prefix = settings.tablePrefix;

    // ----- Tables -----------------------------------------------------------

    const kinesisStream = settings.kinesis
      ? new kinesis.Stream(this, 'EventsKinesis', {
          // Provisioned: one shard is ~$11 a month idle, an on-demand stream ~$29.
          streamMode: kinesis.StreamMode.PROVISIONED,
          shardCount: settings.kinesisShards,
          retentionPeriod: Duration.hours(24),
          encryption: kinesis.StreamEncryption.MANAGED,
        })
      : undefined;

    this.eventsTable = this.table('EventsTable', prefix, schemas.events, {
      deletionProtection: true,
      kinesisStream,
    });
    this.readModelsTable = this.table('ReadModelsTable', prefix, schemas.readModels, {});

    const eventsName = `${prefix}${schemas.events.TableName}`;
    const readModelsName = `${prefix}${schemas.readModels.TableName}`;
    const tableArn = (name: string) =>
      this.formatArn({ service: 'dynamodb', resource: 'table', resourceName: name });
    const eventsArn = tableArn(eventsName);
    const tenantsIndexArn = `${eventsArn}/index/${TENANTS_INDEX}`;
    // The read models: the first table (which holds the generation pointer),
    // the generations `tally replay rebuild` creates, and their indexes.
    const firstReadModelsArn = tableArn(readModelsName);
    const generationsArn = tableArn(`${readModelsName}-g*`);
    const readModelArns = [
      firstReadModelsArn,
      `${firstReadModelsArn}/index/*`,
      generationsArn,
      `${generationsArn}/index/*`,
    ];

    // ----- Alarms -----------------------------------------------------------

    this.alarmTopic = new sns.Topic(this, 'Alarms', { displayName: 'Tally alarms' });
    if (settings.alarmEmail) {
      this.alarmTopic.addSubscription(new subscriptions.EmailSubscription(settings.alarmEmail));
    }
    const alarm = (id: string, metric: cloudwatch.IMetric, threshold: number, description: string) => {
      const made = new cloudwatch.Alarm(this, id, {
        metric,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      made.addAlarmAction(new cwActions.SnsAction(this.alarmTopic));
      made.addOkAction(new cwActions.SnsAction(this.alarmTopic));
      return made;
    };
    const fiveMinutes = Duration.minutes(5);

    // ----- Functions --------------------------------------------------------

    const placeholder = lambda.Code.fromAsset(findPlaceholder());
    const code = (binary: string): lambda.Code => {
      const zip = path.join(repoRoot, 'target', 'lambda', binary, 'bootstrap.zip');
      if (settings.assets === 'placeholder') {
        return placeholder;
      }
      if (fs.existsSync(zip)) {
        return lambda.Code.fromAsset(zip);
      }
      if (settings.assets === 'packaged') {
        throw new Error(`${zip} is missing: run scripts/package first`);
      }
      Annotations.of(this).addWarningV2(
        `tally:placeholder:${binary}`,
        `${binary}: target/lambda/${binary}/bootstrap.zip is missing, so the function gets a placeholder ` +
          'that fails every invocation (run scripts/package, and deploy with -c assets=packaged)',
      );
      return placeholder;
    };

    const rustFunction = (
      id: string,
      binary: string,
      description: string,
      options: Partial<lambda.FunctionProps> & { environment?: Record<string, string> },
    ) => {
      const fn = new lambda.Function(this, id, {
        description,
        runtime: lambda.Runtime.PROVIDED_AL2023,
        architecture: lambda.Architecture.ARM_64,
        handler: 'bootstrap',
        code: code(binary),
        memorySize: 256,
        timeout: Duration.seconds(30),
        loggingFormat: lambda.LoggingFormat.JSON,
        logGroup: new logs.LogGroup(this, `${id}Logs`, { retention: logs.RetentionDays.ONE_MONTH }),
        ...options,
        environment: {
          TALLY_TABLE_PREFIX: prefix,
          RUST_LOG: 'info',
          ...options.environment,
        },
      });
      this.functions[id] = fn;
      alarm(`${id}Errors`, fn.metricErrors({ period: fiveMinutes, statistic: 'Sum' }), 0, `${binary} failed`);
      alarm(`${id}Throttles`, fn.metricThrottles({ period: fiveMinutes, statistic: 'Sum' }), 0, `${binary} was throttled`);
      return fn;
    };

    // Users and the API's authorizer.
    const userPool = new cognito.UserPool(this, 'Users', {
      selfSignUpEnabled: false,
      signInAliases: { email: true },
      featurePlan: cognito.FeaturePlan.LITE,
      accountRecovery: cognito.AccountRecovery.EMAIL_ONLY,
      customAttributes: {
        // Set by an administrator when the user is created, never changed:
        // the API scopes every request to this tenant.
        tenant_id: new cognito.StringAttribute({ minLen: 1, maxLen: 64, mutable: false }),
        // A cashier can move between stalls: an administrator may change it.
        vendor_id: new cognito.StringAttribute({ minLen: 1, maxLen: 64, mutable: true }),
        employee_id: new cognito.StringAttribute({ minLen: 1, maxLen: 64, mutable: false }),
      },
    });
    for (const group of GROUPS) {
      userPool.addGroup(`Group${group}`, { groupName: group });
    }
    const client = userPool.addClient('AppClient', {
      generateSecret: false,
      authFlows: { userPassword: true, userSrp: true },
      preventUserExistenceErrors: true,
      // Users may read their tenant, vendor and employee ids but never write them.
      readAttributes: new cognito.ClientAttributes()
        .withStandardAttributes({ email: true, emailVerified: true, fullname: true })
        .withCustomAttributes('tenant_id', 'vendor_id', 'employee_id'),
      writeAttributes: new cognito.ClientAttributes().withStandardAttributes({ fullname: true }),
    });
    const issuer = `https://cognito-idp.${this.region}.amazonaws.com/${userPool.userPoolId}`;

    const api = rustFunction('Api', BINARIES.api, 'Tally HTTP API (API Gateway REST proxy)', {
      memorySize: 512,
      timeout: Duration.seconds(10),
      environment: {
        TALLY_COGNITO_ISSUER: issuer,
        TALLY_COGNITO_CLIENT_ID: client.userPoolClientId,
        TALLY_COGNITO_TOKEN_USE: 'id',
        AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH: 'true',
      },
    });

    const replenisher = rustFunction('Replenisher', BINARIES.replenisher, 'Tally credit replenishment (hourly)', {
      memorySize: 512,
      timeout: Duration.minutes(5),
      // One run at a time; each run is safe to repeat anyway.
      reservedConcurrentExecutions: settings.replenisherConcurrency,
      retryAttempts: 2,
      maxEventAge: Duration.hours(1),
    });
    // Hourly, because a tenant's replenishment is due at midnight in its own
    // time zone: every hour is some zone's midnight (including the :30 and
    // :45 zones, which the run at five past the next hour still catches the
    // same day). The handler decides which accounts are due.
    new events.Rule(this, 'ReplenishHourly', {
      description: 'Runs the replenisher; it decides per tenant time zone which credit accounts are due',
      schedule: events.Schedule.expression(REPLENISH_SCHEDULE),
      targets: [new targets.LambdaFunction(replenisher, { retryAttempts: 2, maxEventAge: Duration.hours(1) })],
    });

    // The API and the replenisher append to the log and read the read models.
    for (const fn of [api, replenisher]) {
      fn.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'AppendAndReadEvents',
          actions: [...DYNAMO_READ, ...EVENT_APPEND, 'dynamodb:DescribeTable'],
          resources: [eventsArn],
        }),
      );
      fn.addToRolePolicy(
        new iam.PolicyStatement({ sid: 'ReadReadModels', actions: DYNAMO_READ, resources: readModelArns }),
      );
    }
    replenisher.addToRolePolicy(
      new iam.PolicyStatement({ sid: 'ListTenants', actions: ['dynamodb:Query'], resources: [tenantsIndexArn] }),
    );

    // The projector: the change stream in, the read models out.
    const dlq = new sqs.Queue(this, 'ProjectorFailures', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    alarm(
      'ProjectorFailuresVisible',
      dlq.metricApproximateNumberOfMessagesVisible({ period: fiveMinutes, statistic: 'Maximum' }),
      0,
      'A batch of change records was given up: see the queue for the shard and sequence range, then tally replay verify',
    );

    // No reserved concurrency: with a parallelization factor of 1 Lambda
    // runs one projector per shard, which already bounds what it does to the
    // read models; a reservation below the shard count would only stall
    // shards (and their iterator age) behind it.
    const projector = settings.kinesis
      ? rustFunction('ProjectorKinesis', BINARIES.projectorKinesis, 'Tally projector (Kinesis Data Streams)', {})
      : rustFunction('ProjectorStreams', BINARIES.projectorStreams, 'Tally projector (DynamoDB Streams)', {});
    projector.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'WriteReadModels',
        actions: [...DYNAMO_READ, ...VIEW_WRITE],
        resources: readModelArns,
      }),
    );
    projector.addToRolePolicy(
      new iam.PolicyStatement({ sid: 'ReportFailures', actions: ['sqs:SendMessage'], resources: [dlq.queueArn] }),
    );
    let source: string;
    if (kinesisStream) {
      source = kinesisStream.streamArn;
      projector.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'ReadChanges',
          actions: [
            'kinesis:DescribeStream',
            'kinesis:DescribeStreamSummary',
            'kinesis:GetRecords',
            'kinesis:GetShardIterator',
            'kinesis:ListShards',
            'kinesis:ListStreams',
          ],
          resources: [source],
        }),
      );
    } else {
      source = this.eventsTable.tableStreamArn!;
      projector.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'ReadChanges',
          actions: ['dynamodb:DescribeStream', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator', 'dynamodb:ListStreams'],
          resources: [source],
        }),
      );
    }
    // The function, and so the mapping, depends on the role's policy: the
    // first poll finds the statements above in place.
    new lambda.EventSourceMapping(this, 'ProjectorMapping', {
      target: projector,
      eventSourceArn: source,
      enabled: true,
      ...MAPPING,
      onFailure: new QueueDestination(dlq),
    });
    alarm(
      'ProjectorIteratorAge',
      projector.metric('IteratorAge', { period: fiveMinutes, statistic: 'Maximum' }),
      ITERATOR_AGE_ALARM_MS,
      'The projector is more than an hour behind the change stream (records expire after 24 h)',
    );

    // ----- API --------------------------------------------------------------

    const authorizer = new apigw.CognitoUserPoolsAuthorizer(this, 'Authorizer', {
      cognitoUserPools: [userPool],
      identitySource: 'method.request.header.Authorization',
    });
    const rest = new apigw.LambdaRestApi(this, 'RestApi', {
      restApiName: `${prefix}api`,
      handler: api,
      proxy: true,
      cloudWatchRole: false,
      endpointTypes: [apigw.EndpointType.REGIONAL],
      // Stage-level metrics only (free): per-method detailed metrics are billed as custom metrics.
      deployOptions: { stageName: 'prod' },
      defaultMethodOptions: { authorizer, authorizationType: apigw.AuthorizationType.COGNITO },
    });
    alarm(
      'ApiServerErrors',
      rest.metricServerError({ period: fiveMinutes, statistic: 'Sum' }),
      0,
      'The API answered 5XX',
    );

    // ----- DynamoDB throttling ----------------------------------------------

    for (const [id, table] of [
      ['Events', this.eventsTable],
      ['ReadModels', this.readModelsTable],
    ] as const) {
      for (const kind of ['ReadThrottleEvents', 'WriteThrottleEvents']) {
        alarm(
          `${id}${kind}`,
          table.metric(kind, { period: fiveMinutes, statistic: 'Sum' }),
          0,
          `${table.tableName}: ${kind}`,
        );
      }
    }

    // ----- The operators' role ----------------------------------------------

    // `tally audit`, `digest`, `export`, `replay` and `parked` with
    // `--store dynamodb`: they read whole tables (the only Scan anywhere),
    // fold the log into new read-model generations and move the pointer.
    this.replayRole = new iam.Role(this, 'ReplayRole', {
      description: 'Operators running tally audit / replay against this deployment',
      assumedBy: new iam.AccountRootPrincipal(),
      maxSessionDuration: Duration.hours(12),
    });
    this.replayRole.addToPolicy(
      new iam.PolicyStatement({
        sid: 'ReadEverything',
        actions: ['dynamodb:Scan', 'dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:DescribeTable'],
        resources: [eventsArn, `${eventsArn}/index/*`, ...readModelArns],
      }),
    );
    this.replayRole.addToPolicy(
      new iam.PolicyStatement({
        sid: 'ManageGenerations',
        actions: ['dynamodb:CreateTable', 'dynamodb:DeleteTable', 'dynamodb:UpdateTimeToLive'],
        resources: [generationsArn],
      }),
    );
    // Writes: a rebuild into its generation, the pointer in the first table,
    // and `replay redrive`, which projects parked records into whichever
    // generation is live (the first one until a rebuild).
    this.replayRole.addToPolicy(
      new iam.PolicyStatement({
        sid: 'WriteReadModels',
        actions: VIEW_WRITE,
        resources: [generationsArn, firstReadModelsArn],
      }),
    );

    // ----- Outputs ----------------------------------------------------------

    new CfnOutput(this, 'ApiUrl', { value: rest.url, description: 'The API (append /v1/...)' });
    new CfnOutput(this, 'UserPoolId', { value: userPool.userPoolId });
    new CfnOutput(this, 'UserPoolClientId', { value: client.userPoolClientId });
    new CfnOutput(this, 'CognitoIssuer', { value: issuer });
    new CfnOutput(this, 'EventsTableName', { value: this.eventsTable.tableName });
    new CfnOutput(this, 'ReadModelsTableName', { value: this.readModelsTable.tableName });
    new CfnOutput(this, 'ReplayRoleArn', { value: this.replayRole.roleArn });
    new CfnOutput(this, 'ProjectorFailuresQueueUrl', { value: dlq.queueUrl });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.alarmTopic.topicArn });
  }

  /** A table as its definition says, on demand, with point-in-time recovery. */
  private table(
    id: string,
    prefix: string,
    def: TableDefinition,
    extra: Pick<dynamodb.TableProps, 'deletionProtection' | 'kinesisStream'>,
  ): dynamodb.Table {
    const ttl = def.TimeToLiveSpecification;
    const table = new dynamodb.Table(this, id, {
      tableName: `${prefix}${def.TableName}`,
      ...keys(def, def.KeySchema),
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      stream: streamViewType(def),
      timeToLiveAttribute: ttl?.Enabled ? ttl.AttributeName : undefined,
      ...extra,
    });
    addIndexes(table, def);
    return table;
  }
}

/** infra/cdk/placeholder/: the code of a function whose binary is not packaged. */
function findPlaceholder(): string {
  let dir = __dirname;
  for (;;) {
    const candidate = path.join(dir, 'placeholder');
    if (fs.existsSync(path.join(candidate, 'bootstrap'))) {
      return candidate;
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new Error(`no placeholder/bootstrap above ${__dirname}`);
    }
    dir = parent;
  }
}

// The contract as a Node service loads it: proto/ through @grpc/proto-loader, typed by the
// interfaces that proto-loader-gen-types writes into gen/ (same options on both sides).

import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs';

import type { ProtoGrpcType as SuppressionProto } from '../gen/suppression';
import type { ProtoGrpcType as HealthProto } from '../gen/health';
import type { SuppressionServiceClient } from '../gen/suppression/v1/SuppressionService';
import type { HealthClient } from '../gen/grpc/health/v1/Health';
import type { Status__Output } from '../gen/google/rpc/Status';
import type { BadRequest__Output } from '../gen/google/rpc/BadRequest';

/** clients/node (this file runs from dist/src). */
export const packageRoot = path.resolve(__dirname, '..', '..');
/** The repository: clients/node/../.. */
export const repoRoot = path.resolve(packageRoot, '..', '..');

const googleapis = path.join(packageRoot, 'third_party', 'googleapis');
const healthProtos = path.join(packageRoot, 'node_modules', 'grpc-health-check', 'proto');

// The options proto-loader-gen-types is run with (package.json, script "gen").
const loaderOptions: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

function load<T>(file: string, includeDirs: string[]): T {
  const definition = protoLoader.loadSync(file, { ...loaderOptions, includeDirs });
  return grpc.loadPackageDefinition(definition) as unknown as T;
}

const suppression = load<SuppressionProto>('suppression/v1/suppression.proto', [
  path.join(repoRoot, 'proto'),
]);
const health = load<HealthProto>('health/v1/health.proto', [healthProtos]);

export function suppressionClient(address: string): SuppressionServiceClient {
  return new suppression.suppression.v1.SuppressionService(
    address,
    grpc.credentials.createInsecure(),
  );
}

export function healthClient(address: string): HealthClient {
  return new health.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
}

/** A deadline for one call. */
export function within(ms = 10_000): grpc.CallOptions {
  return { deadline: Date.now() + ms };
}

/** Wraps a unary call in a promise: `unary((cb) => client.GetSuppressionStatus(req, cb))`. */
export function unary<T>(start: (callback: grpc.requestCallback<T>) => unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    start((err, value) => (err ? reject(err) : resolve(value as T)));
  });
}

// google.rpc.Status and BadRequest, decoded from the `grpc-status-details-bin` trailer.
const rpcTypes = (() => {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) =>
    target.startsWith('google/protobuf/') ? target : path.join(googleapis, target);
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
  return {
    status: root.lookupType('google.rpc.Status'),
    badRequest: root.lookupType('google.rpc.BadRequest'),
  };
})();

const toObject: protobuf.IConversionOptions = { defaults: true, arrays: true };
const BAD_REQUEST_URL = 'type.googleapis.com/google.rpc.BadRequest';

/** The rich status of a failed call, or undefined when it carries none. */
export function richStatus(err: grpc.ServiceError): Status__Output | undefined {
  const [bin] = err.metadata.get('grpc-status-details-bin');
  if (bin === undefined) return undefined;
  const bytes = typeof bin === 'string' ? Buffer.from(bin, 'base64') : bin;
  return rpcTypes.status.toObject(rpcTypes.status.decode(bytes), toObject) as Status__Output;
}

/** The BadRequest detail of a failed call, or undefined. */
export function badRequestOf(err: grpc.ServiceError): BadRequest__Output | undefined {
  const detail = richStatus(err)?.details.find((d) => d.type_url === BAD_REQUEST_URL);
  if (detail === undefined) return undefined;
  const message = rpcTypes.badRequest.decode(detail.value);
  return rpcTypes.badRequest.toObject(message, toObject) as BadRequest__Output;
}

// The contract as a Node service calls it: @grpc/grpc-js with types generated from proto/,
// against a real suppressd. Each test works in a tenant of its own.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';

import { badRequestOf, richStatus, suppressionClient, unary, within } from '../src/contract';
import { Server } from '../src/server';
import type { SuppressionServiceClient } from '../gen/suppression/v1/SuppressionService';
import type { SendResult } from '../gen/suppression/v1/SendResult';
import type { AddressStatus__Output } from '../gen/suppression/v1/AddressStatus';
import type {
  ReportSendResultResponse__Output,
} from '../gen/suppression/v1/ReportSendResultResponse';
import type { ListBouncesResponse__Output } from '../gen/suppression/v1/ListBouncesResponse';
import type { CheckImportResponse__Output } from '../gen/suppression/v1/CheckImportResponse';
import type { SuppressionChange__Output } from '../gen/suppression/v1/SuppressionChange';
import type { SuppressResponse__Output } from '../gen/suppression/v1/SuppressResponse';

const server = new Server();
let client: SuppressionServiceClient;

function bounce(event_id: string, address: string, fields: Partial<SendResult> = {}): SendResult {
  return {
    event_id,
    address,
    outcome: 'OUTCOME_BOUNCE',
    smtp_response: `550 5.1.1 <${address}>: Recipient address rejected: User unknown`,
    ...fields,
  };
}

function report(tenant: string, result: SendResult): Promise<ReportSendResultResponse__Output> {
  return unary((cb) => client.ReportSendResult({ tenant, result }, within(), cb));
}

async function statusOf(tenant: string, address: string): Promise<AddressStatus__Output> {
  const reply = await unary<{ status: AddressStatus__Output | null }>((cb) =>
    client.GetSuppressionStatus({ tenant, address }, within(), cb),
  );
  assert.ok(reply.status);
  return reply.status;
}

/** Runs a call that must fail and returns its error. */
async function failure(call: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await call;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  assert.fail('the call succeeded');
}

describe('suppressd from Node (@grpc/grpc-js)', { timeout: 120_000 }, () => {
  before(async () => {
    await server.start();
    client = suppressionClient(server.address);
  });

  after(async () => {
    client?.close();
    await server.stop();
  });

  it('a hard bounce suppresses the address for its tenant only', async () => {
    const reply = await report('node-report', bounce('msg-1', 'Sarah.Smith@Company.COM'));
    assert.equal(reply.classification?.outcome_type, 'OUTCOME_TYPE_HARD');
    assert.equal(reply.classification?.reason, 'BOUNCE_REASON_MAILBOX_NOT_FOUND');
    assert.equal(reply.duplicate, false);

    const status = await statusOf('node-report', 'sarah.smith@company.com');
    assert.equal(status.state, 'ADDRESS_STATE_SUPPRESSED');
    assert.equal(status.suppression?.reason, 'BOUNCE_REASON_MAILBOX_NOT_FOUND');
    assert.equal(status.suppression?.event_id, 'msg-1');
    assert.equal(status.address, 'sarah.smith@company.com');

    // The same event again is a duplicate; another tenant never sees the suppression.
    const again = await report('node-report', bounce('msg-1', 'Sarah.Smith@Company.COM'));
    assert.equal(again.duplicate, true);
    const other = await statusOf('node-other', 'sarah.smith@company.com');
    assert.equal(other.state, 'ADDRESS_STATE_ALLOWED');
  });

  it('CheckImport answers each message in order over one stream', async () => {
    const tenant = 'node-import';
    await report(tenant, bounce('gone-1', 'gone@example.com'));
    await report(tenant, bounce('left-1', 'left@example.com'));

    const batches: [string, string][][] = [
      [['crm-1', 'fresh@example.com'], ['crm-2', 'GONE@example.com'], ['crm-3', 'not-an-addr']],
      [['crm-4', 'Fresh@Example.com'], ['crm-5', 'second@example.com']],
      [['crm-6', 'third@example.com'], ['crm-7', 'Left@EXAMPLE.com'], ['crm-8', 'x@example.com']],
    ];
    const [allow, suppressed] = ['IMPORT_DECISION_ALLOW', 'IMPORT_DECISION_BLOCK_SUPPRESSED'];
    const expected = [
      [allow, suppressed, 'IMPORT_DECISION_BLOCK_INVALID'],
      ['IMPORT_DECISION_DUPLICATE', allow],
      [allow, suppressed, allow],
    ];

    // As a sync job does: send a batch, read its verdicts, then send the next.
    const call = client.CheckImport(within());
    const responses: AsyncIterator<CheckImportResponse__Output> = call[Symbol.asyncIterator]();
    const seen: string[][] = [];
    for (const [index, batch] of batches.entries()) {
      call.write({
        tenant,
        contacts: batch.map(([external_id, address]) => ({ external_id, address })),
      });
      const { value: response, done } = await responses.next();
      assert.equal(done, false, `no answer to message ${index}`);
      assert.equal(response.batch_index, String(index));
      assert.deepEqual(
        response.verdicts.map((v) => v.position),
        batch.map((_, i) => i),
      );
      assert.deepEqual(
        response.verdicts.map((v) => v.external_id),
        batch.map(([id]) => id),
      );
      assert.deepEqual(
        response.verdicts.map((v) => v.address),
        batch.map(([, address]) => address),
      );
      seen.push(response.verdicts.map((v) => v.decision));
      if (index === 0) {
        assert.equal(response.verdicts[1].normalized_address, 'gone@example.com');
        assert.equal(response.verdicts[1].suppression?.reason, 'BOUNCE_REASON_MAILBOX_NOT_FOUND');
      }
    }
    call.end();
    assert.equal((await responses.next()).done, true);
    assert.deepEqual(seen, expected);
  });

  it('ListBounces pages newest first with page tokens', async () => {
    const tenant = 'node-bounces';
    const base = 1_780_000_000;
    for (let i = 0; i < 5; i++) {
      await report(
        tenant,
        bounce(`w${i}`, `w${i}@example.com`, {
          source: 'webinar',
          occurred_at: { seconds: base + i, nanos: 0 },
        }),
      );
    }
    await report(tenant, bounce('other', 'other@example.com', { source: 'purchased-list' }));

    const list = (source: string, page_token: string) =>
      unary<ListBouncesResponse__Output>((cb) =>
        client.ListBounces({ tenant, source, page_size: 2, page_token }, within(), cb),
      );
    const pages: string[][] = [];
    let token = '';
    do {
      const page = await list('webinar', token);
      pages.push(page.bounces.map((b) => b.event_id));
      token = page.next_page_token;
      assert.ok(pages.length < 10, 'paging does not end');
    } while (token !== '');
    assert.deepEqual(pages, [['w4', 'w3'], ['w2', 'w1'], ['w0']]);

    // A token is bound to the filters it was issued for.
    const first = await list('webinar', '');
    const err = await failure(list('purchased-list', first.next_page_token));
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
  });

  it('an invalid address is INVALID_ARGUMENT with a BadRequest naming the field', async () => {
    const err = await failure(report('node-errors', bounce('bad-1', 'nobody')));
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.ok(err.metadata.get('grpc-status-details-bin').length > 0);
    assert.equal(richStatus(err)?.code, grpc.status.INVALID_ARGUMENT);
    const badRequest = badRequestOf(err);
    assert.ok(badRequest, 'no BadRequest detail');
    assert.deepEqual(
      badRequest.field_violations.map((v) => v.field),
      ['result.address'],
    );
    assert.notEqual(badRequest.field_violations[0].description, '');

    const tenantErr = await failure(statusOf('Not A Tenant', 'a@example.com'));
    assert.deepEqual(
      badRequestOf(tenantErr)?.field_violations.map((v) => v.field),
      ['tenant'],
    );
  });

  it('WatchSuppressions delivers a manual suppression', async () => {
    const tenant = 'node-feed';
    const changes = client.WatchSuppressions({ tenant }, within());
    // The server answers the call's headers once it has fixed where the feed starts: every
    // change committed after this is delivered.
    await once(changes, 'metadata');
    const next = once(changes, 'data') as Promise<[SuppressionChange__Output]>;

    await unary<SuppressResponse__Output>((cb) =>
      client.Suppress({ tenant, address: 'Opt.Out@Example.com', note: 'ticket 42' }, within(), cb),
    );
    const [change] = await next;
    changes.on('error', () => {}); // the cancellation below ends the call with CANCELLED
    changes.cancel();

    assert.equal(change.kind, 'SUPPRESSION_CHANGE_KIND_SUPPRESSED');
    assert.equal(change.address, 'opt.out@example.com');
    assert.equal(change.suppression?.reason, 'BOUNCE_REASON_MANUAL');
    assert.notEqual(change.cursor, '');
  });
});

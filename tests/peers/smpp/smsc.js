// An upstream SMSC built on the npm package `smpp`, for the tests of the SMPP client.
//
//   node smsc.js '{"port": 0, "system_id": "gw", "password": "pw", "ids": "hex",
//                  "receipts": "after" | "before" | "none", "stat": "DELIVRD",
//                  "receipts_by": "deliver_sm" | "data_sm"}'
//
// Prints JSON lines on stdout: {"event":"listening","port":N} first, then one line per
// bind, submit_sm (with its UDH as hex, its decoded text and its validity_period as a
// time), deliver_sm_resp and data_sm_resp.
// Reads JSON lines on stdin: {"cmd":"deliver","from":..,"to":..,"text":..,
// "coding":"ucs2"|"gsm7","parts":N,"reverse":true} sends an inbound message to every
// bound session as N deliver_sm with a UDH (the text's bytes cut in N even pieces, so a
// piece may end inside a surrogate pair: the receiver must join bytes before decoding);
// {"cmd":"data_sm","from":..,"to":..,"text":..,"coding":..} sends it as one data_sm with
// the text in message_payload. A receipt by data_sm carries no text, only the
// receipted_message_id and message_state TLVs.
'use strict';
const smpp = require('smpp');
const readline = require('readline');

const opts = Object.assign(
  {
    port: 0, system_id: 'gw', password: 'pw', ids: 'hex', receipts: 'after', stat: 'DELIVRD',
    receipts_by: 'deliver_sm',
  },
  JSON.parse(process.argv[2] || '{}'),
);
const sessions = new Set();
let counter = Math.floor(Date.now() / 1000) * 1000;
let reference = 1;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function newId() {
  counter += 1;
  return opts.ids === 'decimal' ? String(counter) : counter.toString(16).toUpperCase();
}

function yymmddhhmm(d) {
  const p = (n) => String(n).padStart(2, '0');
  return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) +
    p(d.getUTCHours()) + p(d.getUTCMinutes());
}

function receipt(session, pdu, id) {
  if (opts.receipts_by === 'data_sm') {
    session.data_sm({
      source_addr: pdu.destination_addr,
      source_addr_ton: pdu.dest_addr_ton,
      destination_addr: pdu.source_addr,
      dest_addr_ton: pdu.source_addr_ton,
      esm_class: 0x04,
      data_coding: 0,
      receipted_message_id: id,
      message_state: opts.stat === 'DELIVRD' ? 2 : 5,
    }, (resp) => out({ event: 'receipt_resp', id, status: resp.command_status }));
    return;
  }
  const now = yymmddhhmm(new Date());
  const text = `id:${id} sub:001 dlvrd:001 submit date:${now} done date:${now} stat:${opts.stat} err:000 text:`;
  session.deliver_sm({
    source_addr: pdu.destination_addr,
    source_addr_ton: pdu.dest_addr_ton,
    destination_addr: pdu.source_addr,
    destination_addr_ton: pdu.source_addr_ton,
    esm_class: 0x04,
    short_message: Buffer.from(text, 'latin1'),
    receipted_message_id: id,
    message_state: opts.stat === 'DELIVRD' ? 2 : 5,
  }, (resp) => out({ event: 'receipt_resp', id, status: resp.command_status }));
}

const server = smpp.createServer((session) => {
  const bind = (pdu) => {
    if (pdu.system_id !== opts.system_id || pdu.password !== opts.password) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      return;
    }
    session.send(pdu.response());
    sessions.add(session);
    out({ event: 'bind', command: pdu.command, system_id: pdu.system_id });
  };
  session.on('bind_transceiver', bind);
  session.on('bind_transmitter', bind);
  session.on('bind_receiver', bind);
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.close();
  });
  session.on('submit_sm', (pdu) => {
    const id = newId();
    const sm = pdu.short_message || {};
    out({
      event: 'submit_sm',
      id,
      source: pdu.source_addr,
      destination: pdu.destination_addr,
      esm_class: pdu.esm_class,
      data_coding: pdu.data_coding,
      registered_delivery: pdu.registered_delivery,
      validity_period: pdu.validity_period instanceof Date ? pdu.validity_period.toISOString() : '',
      udh: (sm.udh || []).map((u) => Buffer.from(u).toString('hex')),
      message: typeof sm.message === 'string' ? sm.message : Buffer.from(sm.message || []).toString('hex'),
    });
    if (opts.receipts === 'before') receipt(session, pdu, id);
    session.send(pdu.response({ message_id: id }));
    if (opts.receipts === 'after') setImmediate(() => receipt(session, pdu, id));
  });
  session.on('close', () => sessions.delete(session));
  session.on('error', () => sessions.delete(session));
});

function encodeText(cmd) {
  if (cmd.coding !== 'ucs2') return Buffer.from(cmd.text, 'latin1');
  const le = Buffer.from(cmd.text, 'utf16le');
  const bytes = Buffer.alloc(le.length);
  for (let i = 0; i < le.length; i += 2) { bytes[i] = le[i + 1]; bytes[i + 1] = le[i]; }
  return bytes;
}

// The SMPP address fields for cmd.from and cmd.to (`+` numbers as TON 1).
function addresses(cmd) {
  return {
    source_addr: cmd.from.replace(/^\+/, ''),
    source_addr_ton: cmd.from.startsWith('+') ? 1 : 0,
    source_addr_npi: 1,
    destination_addr: cmd.to.replace(/^\+/, ''),
    dest_addr_ton: cmd.to.startsWith('+') ? 1 : 0,
    dest_addr_npi: 1,
  };
}

function dataSm(cmd) {
  const pdu = {
    ...addresses(cmd),
    esm_class: 0,
    data_coding: cmd.coding === 'ucs2' ? 8 : 3,
    message_payload: encodeText(cmd),
  };
  for (const session of sessions) {
    session.data_sm(pdu, (resp) => out({ event: 'data_sm_resp', status: resp.command_status }));
  }
}

function deliver(cmd) {
  const ucs2 = cmd.coding === 'ucs2';
  const bytes = encodeText(cmd);
  const n = Math.max(1, cmd.parts || 1);
  const unit = ucs2 ? 2 : 1;
  const per = Math.ceil(bytes.length / unit / n) * unit;
  reference = (reference + 1) & 0xff;
  const pdus = [];
  for (let i = 0; i < n; i++) {
    const piece = bytes.slice(i * per, (i + 1) * per);
    const udh = Buffer.from([5, 0, 3, reference, n, i + 1]);
    pdus.push({
      ...addresses(cmd),
      esm_class: n > 1 ? 0x40 : 0,
      data_coding: ucs2 ? 8 : 3,
      short_message: n > 1 ? Buffer.concat([udh, piece]) : piece,
    });
  }
  if (cmd.reverse) pdus.reverse();
  for (const session of sessions) {
    for (const p of pdus) {
      session.deliver_sm(p, (resp) => out({ event: 'deliver_sm_resp', status: resp.command_status }));
    }
  }
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { return; }
  if (cmd.cmd === 'deliver') deliver(cmd);
  if (cmd.cmd === 'data_sm') dataSm(cmd);
});

server.listen(opts.port, '127.0.0.1', () => out({ event: 'listening', port: server.address().port }));

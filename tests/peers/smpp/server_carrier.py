"""A carrier (ESME) binding to Switchboard's SMPP server with smpplib.

Usage: server_carrier.py HOST PORT SCENARIO [ARGS...]; prints one JSON object per line
for the test to check, and exits non-zero on an unexpected failure.

Scenarios:
  bind_errors                 wrong password, unknown system_id, then a good bind
  submit DEST RECEIPTS        a GSM 7-bit message (with extension characters) and a long
                              UCS-2 message with emoji split by smpplib.gsm.make_parts,
                              both with registered_delivery=1; then waits for RECEIPTS
                              deliver_sm and answers them
  scheduled DEST              a message scheduled an hour ahead; once the test cancels it,
                              the receipt (stat:DELETED), then query_sm
  receive COUNT               binds as a receiver and waits for COUNT deliver_sm
"""

import json
import socket
import sys
import time

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm

SYSTEM_ID = "carrier1"
PASSWORD = "s3cret"
DEADLINE = 60


def out(**fields):
    print(json.dumps(fields), flush=True)


def text_of(value):
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def client(host, port):
    c = smpplib.client.Client(host, port, timeout=5, allow_unknown_opt_params=True)
    c.connect()
    c.set_error_pdu_handler(
        lambda pdu: out(event="error", command=pdu.command, status=pdu.status, sequence=pdu.sequence)
    )
    c.set_message_sent_handler(
        lambda pdu: out(
            event="submit_sm_resp",
            sequence=pdu.sequence,
            status=pdu.status,
            message_id=text_of(pdu.message_id),
        )
    )
    c.set_query_resp_handler(
        lambda pdu: out(
            event="query_sm_resp",
            status=pdu.status,
            message_id=text_of(pdu.message_id),
            message_state=pdu.message_state,
        )
    )
    return c


def on_deliver(received):
    def handler(pdu):
        out(
            event="deliver_sm",
            esm_class=pdu.esm_class,
            data_coding=pdu.data_coding,
            source_addr=text_of(pdu.source_addr),
            destination_addr=text_of(pdu.destination_addr),
            short_message=(pdu.short_message or b"").hex(),
            receipted_message_id=text_of(getattr(pdu, "receipted_message_id", None)),
            message_state=getattr(pdu, "message_state", None),
        )
        received.append(pdu)

    return handler


def read_until(c, done, what):
    deadline = time.monotonic() + DEADLINE
    while not done():
        if time.monotonic() > deadline:
            out(event="timeout", waiting_for=what)
            sys.exit(2)
        try:
            c.read_once()
        except socket.timeout:
            pass


def bind_errors(host, port):
    for system_id, password in [(SYSTEM_ID, "wrong"), ("nobody", PASSWORD), (SYSTEM_ID, PASSWORD)]:
        c = client(host, port)
        try:
            c.bind_transceiver(system_id=system_id, password=password)
            out(event="bind", system_id=system_id, password=password, status=0)
            c.unbind()
        except smpplib.exceptions.PDUError as e:
            out(event="bind", system_id=system_id, password=password, status=e.args[1])
        c.disconnect()


def submit(host, port, dest, receipts):
    c = client(host, port)
    received = []
    c.set_message_received_handler(on_deliver(received))
    c.bind_transceiver(system_id=SYSTEM_ID, password=PASSWORD)
    responses = []
    sent = c.message_sent_handler

    def record(pdu):
        responses.append(pdu)
        sent(pdu=pdu)

    c.set_message_sent_handler(record)

    short = "Hello {from} smpplib: 5€ [ok]"
    parts, coding, esm_class = smpplib.gsm.make_parts(short)
    assert len(parts) == 1 and coding == smpplib.consts.SMPP_ENCODING_DEFAULT
    pdu = c.send_message(
        source_addr_ton=smpplib.consts.SMPP_TON_INTL,
        source_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
        source_addr="15550100",
        dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
        dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
        destination_addr=dest,
        short_message=parts[0],
        data_coding=coding,
        esm_class=esm_class,
        registered_delivery=1,
    )
    out(event="submit_sm", sequences=[pdu.sequence], text=short)

    long = "Grüße aus Köln 😀🎉 — сообщение номер один. " * 4
    parts, coding, esm_class = smpplib.gsm.make_parts(long)
    assert coding == smpplib.consts.SMPP_ENCODING_ISO10646 and len(parts) > 1
    sequences = []
    for part in parts:
        pdu = c.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_INTL,
            source_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            source_addr="15550100",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            destination_addr=dest,
            short_message=part,
            data_coding=coding,
            esm_class=esm_class,
            registered_delivery=1,
        )
        sequences.append(pdu.sequence)
    out(event="submit_sm", sequences=sequences, text=long)

    read_until(c, lambda: len(responses) >= 1 + len(parts), "submit_sm_resp")
    read_until(c, lambda: len(received) >= receipts, "deliver_sm")
    c.unbind()
    c.disconnect()
    out(event="done")


def scheduled(host, port, dest):
    c = client(host, port)
    received = []
    c.set_message_received_handler(on_deliver(received))
    c.bind_transceiver(system_id=SYSTEM_ID, password=PASSWORD)
    responses = []
    sent = c.message_sent_handler

    def record(pdu):
        responses.append(pdu)
        sent(pdu=pdu)

    c.set_message_sent_handler(record)
    c.send_message(
        source_addr_ton=smpplib.consts.SMPP_TON_INTL,
        source_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
        source_addr="15550100",
        dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
        dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
        destination_addr=dest,
        short_message=b"later",
        schedule_delivery_time="000000010000000R",
        registered_delivery=1,
    )
    read_until(c, lambda: len(responses) >= 1, "submit_sm_resp")
    message_id = text_of(responses[0].message_id)
    # The test cancels it now (DELETE /v1/messages/{id}); the receipt says DELETED.
    read_until(c, lambda: len(received) >= 1, "deliver_sm")
    queried = []
    query_handler = c.query_resp_handler

    def on_query(pdu):
        queried.append(pdu)
        query_handler(pdu=pdu)

    c.set_query_resp_handler(on_query)
    c.query_message(
        message_id=message_id,
        source_addr_ton=smpplib.consts.SMPP_TON_INTL,
        source_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
        source_addr="15550100",
    )
    read_until(c, lambda: len(queried) >= 1, "query_sm_resp")
    c.unbind()
    c.disconnect()
    out(event="done")


def receive(host, port, count):
    c = client(host, port)
    received = []
    c.set_message_received_handler(on_deliver(received))
    c.bind_receiver(system_id=SYSTEM_ID, password=PASSWORD)
    out(event="bound")
    read_until(c, lambda: len(received) >= count, "deliver_sm")
    c.unbind()
    c.disconnect()
    out(event="done")


def main():
    host, port, scenario, *args = sys.argv[1:]
    port = int(port)
    if scenario == "bind_errors":
        bind_errors(host, port)
    elif scenario == "submit":
        submit(host, port, args[0], int(args[1]))
    elif scenario == "scheduled":
        scheduled(host, port, args[0])
    elif scenario == "receive":
        receive(host, port, int(args[0]))
    else:
        raise SystemExit("unknown scenario " + scenario)


if __name__ == "__main__":
    main()

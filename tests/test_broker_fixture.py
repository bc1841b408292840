import subprocess

from tests.support.broker import Broker


def test_private_broker_round_trips_a_message(broker: Broker) -> None:
    # Retained, so the subscriber gets it however late it subscribes (no sleep to guess).
    subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-t", "t/fixture",
                    "-m", "hello", "-q", "1", "-r"], check=True)
    sub = subprocess.run(
        ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-t", "t/fixture", "-C", "1",
         "-W", "10"],
        capture_output=True, timeout=15,
    )
    assert sub.stdout.strip() == b"hello"

import subprocess

from tests.support.broker import Broker


def test_private_broker_round_trips_a_message(broker: Broker) -> None:
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-t", "t/fixture", "-C", "1",
         "-W", "10"],
        stdout=subprocess.PIPE,
    )
    import time

    time.sleep(0.3)
    subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-t", "t/fixture",
                    "-m", "hello", "-q", "1"], check=True)
    out, _ = sub.communicate(timeout=15)
    assert out.strip() == b"hello"

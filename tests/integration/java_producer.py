"""Apache Kafka's own Java producer for tests (java/CompressedProducer.java).

The program is compiled on first use against the jars that ``scripts/services.sh``
runs the broker from (``kafka-clients`` and its codec libraries: lz4-java,
snappy-java, zstd-jni), so a test can write records the way Java services do.
Blocking: call it from sync tests or through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path

from .private_services import KAFKA_VERSION, kafka_lib

SOURCE = Path(__file__).with_name("java") / "CompressedProducer.java"
MAIN_CLASS = "CompressedProducer"


class JavaProducer:
    """Compiles CompressedProducer into ``out_dir`` on first use (once), then runs it."""

    def __init__(self, out_dir: Path, lib_dir: Path | None = None) -> None:
        self.out_dir = out_dir
        self.lib_dir = lib_dir or kafka_lib()
        self._compiled = False
        self._lock = threading.Lock()

    def _compile(self, timeout_s: float) -> None:
        with self._lock:
            if self._compiled:
                return
            clients = self.lib_dir / f"kafka-clients-{KAFKA_VERSION}.jar"
            assert clients.is_file(), f"{clients} is missing: run scripts/services.sh start"
            javac = shutil.which("javac")
            assert javac, "javac not found: the Java producer test needs a JDK (17+)"
            compiled = subprocess.run(
                [javac, "-cp", f"{self.lib_dir}/*", "-d", str(self.out_dir), str(SOURCE)],
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
            assert compiled.returncode == 0, f"javac failed:\n{compiled.stderr.decode()}"
            self._compiled = True

    def produce(
        self,
        bootstrap: str,
        topic: str,
        records: Iterable[tuple[str, bytes | None, bytes]],
        timeout_s: float = 60.0,
    ) -> str:
        """Send ``(compression_type, key, value)`` records; return what the program printed.

        Keys and values must be UTF-8 without tabs or newlines (compact JSON is).
        Raises AssertionError if the program fails, subprocess.TimeoutExpired (after
        killing it) if it runs past ``timeout_s``.
        """
        self._compile(timeout_s)
        lines = b"".join(
            b"%s\t%s\t%s\n" % (compression.encode(), key or b"", value)
            for compression, key, value in records
        )
        classpath = f"{self.out_dir}{os.pathsep}{self.lib_dir}/*"
        finished = subprocess.run(
            ["java", "-cp", classpath, MAIN_CLASS, bootstrap, topic],
            input=lines,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
        out, err = finished.stdout.decode(), finished.stderr.decode()
        assert finished.returncode == 0, (
            f"the Java producer exited with {finished.returncode}:\n{out}\n{err[-3000:]}"
        )
        return out

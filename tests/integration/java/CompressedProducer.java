import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Writes records with Apache Kafka's own Java client, for pushtrio's integration tests.
 *
 * <pre>java -cp "classes:lib/*" CompressedProducer BOOTSTRAP TOPIC &lt; records</pre>
 *
 * Each line of standard input is {@code COMPRESSION<TAB>KEY<TAB>VALUE} (an empty key
 * means none); every compression type gets a producer of its own with that
 * {@code compression.type}. Prints what it sent; exits 1 if any record failed.
 */
public final class CompressedProducer {
    private CompressedProducer() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: CompressedProducer BOOTSTRAP TOPIC < lines");
            System.exit(2);
        }
        Map<String, KafkaProducer<String, String>> producers = new TreeMap<>();
        Map<String, Integer> counts = new TreeMap<>();
        AtomicReference<Exception> failure = new AtomicReference<>();
        try (BufferedReader in =
                new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isEmpty()) {
                    continue;
                }
                String[] parts = line.split("\t", 3);
                if (parts.length != 3) {
                    throw new IllegalArgumentException("not COMPRESSION<TAB>KEY<TAB>VALUE: " + line);
                }
                String key = parts[1].isEmpty() ? null : parts[1];
                producers
                        .computeIfAbsent(parts[0], compression -> open(args[0], compression))
                        .send(
                                new ProducerRecord<>(args[1], key, parts[2]),
                                (metadata, error) -> {
                                    if (error != null) {
                                        failure.compareAndSet(null, error);
                                    }
                                });
                counts.merge(parts[0], 1, Integer::sum);
            }
        } finally {
            // close() sends what is buffered first; delivery.timeout.ms bounds it.
            for (KafkaProducer<String, String> producer : producers.values()) {
                producer.close(Duration.ofSeconds(30));
            }
        }
        if (failure.get() != null) {
            failure.get().printStackTrace();
            System.exit(1);
        }
        System.out.println("sent " + counts);
    }

    private static KafkaProducer<String, String> open(String bootstrap, String compression) {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
        config.put(ProducerConfig.CLIENT_ID_CONFIG, "pushtrio-tests-java-" + compression);
        config.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        config.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 15_000);
        config.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10_000);
        config.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 20_000);
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return new KafkaProducer<>(config);
    }
}

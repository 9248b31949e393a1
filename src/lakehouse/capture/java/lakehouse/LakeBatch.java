package lakehouse;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.List;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.Values;
import org.apache.kafka.connect.header.Header;
import org.apache.kafka.connect.json.JsonConverter;
import org.apache.kafka.connect.source.SourceRecord;

/**
 * Groups a Debezium batch into runs of consecutive records with the same topic and value schema
 * and converts each run's values (and keys, headers) to newline-joined JSON in one pass, so the
 * Python side crosses the JVM boundary a few times per run instead of ~10 times per record.
 * Kind: 0 = rows, 1 = tombstones (null value: an offset, never a row), 2 = heartbeats.
 */
public final class LakeBatch {
    private static final ObjectMapper MAPPER = new ObjectMapper();

    private final List<String> topics = new ArrayList<>();
    private final List<Integer> kinds = new ArrayList<>();
    private final List<Integer> counts = new ArrayList<>();
    private final List<Integer> nullKeys = new ArrayList<>();
    private final List<Schema> valueSchemas = new ArrayList<>();
    private final List<Schema> keySchemas = new ArrayList<>();
    private final List<byte[]> values = new ArrayList<>();
    private final List<byte[]> keys = new ArrayList<>();
    private final List<byte[]> headers = new ArrayList<>();

    public int size() { return topics.size(); }
    public String topic(int i) { return topics.get(i); }
    public int kind(int i) { return kinds.get(i); }
    public int count(int i) { return counts.get(i); }
    public int nullKeys(int i) { return nullKeys.get(i); }
    public Schema valueSchema(int i) { return valueSchemas.get(i); }
    public Schema keySchema(int i) { return keySchemas.get(i); }
    public byte[] values(int i) { return values.get(i); }
    public byte[] keys(int i) { return keys.get(i); }
    public byte[] headers(int i) { return headers.get(i); }

    public static LakeBatch encode(List<ChangeEvent<Object, Object>> records, JsonConverter valueConverter,
                                   JsonConverter keyConverter, boolean withKeys, boolean withHeaders,
                                   String heartbeatPrefix) throws Exception {
        LakeBatch out = new LakeBatch();
        ByteArrayOutputStream vbuf = null, kbuf = null, hbuf = null;
        String runTopic = null;
        int runKind = -1;
        Schema runSchema = null;
        Schema runKeySchema = null;
        for (ChangeEvent<Object, Object> event : records) {
            SourceRecord record = (SourceRecord) event.value();
            String topic = record.topic();
            Object value = record.value();
            int kind = topic.startsWith(heartbeatPrefix) ? 2 : (value == null ? 1 : 0);
            Schema schema = kind == 0 ? record.valueSchema() : null;
            Schema keySchema = kind == 0 ? record.keySchema() : null;
            if (!topic.equals(runTopic) || kind != runKind || schema != runSchema || keySchema != runKeySchema) {
                out.close(vbuf, kbuf, hbuf);
                runTopic = topic;
                runKind = kind;
                runSchema = schema;
                runKeySchema = keySchema;
                out.topics.add(topic);
                out.kinds.add(kind);
                out.counts.add(0);
                out.nullKeys.add(0);
                out.valueSchemas.add(schema);
                out.keySchemas.add(keySchema);
                vbuf = new ByteArrayOutputStream();
                kbuf = new ByteArrayOutputStream();
                hbuf = new ByteArrayOutputStream();
            }
            int last = out.topics.size() - 1;
            out.counts.set(last, out.counts.get(last) + 1);
            if (kind != 0) {
                continue;
            }
            if (vbuf.size() > 0) {
                vbuf.write('\n');
            }
            vbuf.write(valueConverter.fromConnectData(topic, schema, value));
            if (withKeys) {
                if (record.key() == null) {
                    out.nullKeys.set(last, out.nullKeys.get(last) + 1);
                } else {
                    if (kbuf.size() > 0) {
                        kbuf.write('\n');
                    }
                    kbuf.write(keyConverter.fromConnectData(topic, record.keySchema(), record.key()));
                }
            }
            if (withHeaders) {
                List<List<String>> pairs = new ArrayList<>();
                for (Header h : record.headers()) {
                    List<String> pair = new ArrayList<>(2);
                    pair.add(h.key());
                    pair.add(Values.convertToString(h.schema(), h.value()));
                    pairs.add(pair);
                }
                if (hbuf.size() > 0) {
                    hbuf.write('\n');
                }
                hbuf.write(MAPPER.writeValueAsBytes(pairs));
            }
        }
        out.close(vbuf, kbuf, hbuf);
        return out;
    }

    private void close(ByteArrayOutputStream v, ByteArrayOutputStream k, ByteArrayOutputStream h) {
        if (v == null) {
            return;
        }
        values.add(v.toByteArray());
        keys.add(k.toByteArray());
        headers.add(h.toByteArray());
    }

    /**
     * Marks the newest durable record processed and finishes the batch, so Debezium commits its
     * offset. Offsets of one source partition only grow, so the newest record covers all earlier
     * ones; records after it stay unmarked and are replayed after a crash.
     */
    public static void markDurable(ChangeEvent<Object, Object> newest,
                                   DebeziumEngine.RecordCommitter<ChangeEvent<Object, Object>> committer)
            throws InterruptedException {
        committer.markProcessed(newest);
        committer.markBatchFinished();
    }
}

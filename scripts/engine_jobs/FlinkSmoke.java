// A small Flink job for `scripts/cluster flink smoke`: the squares of 1..1000 summed per parity
// in batch mode on the cluster's TaskManagers (even 167167000, odd 166666500).
import org.apache.flink.api.common.RuntimeExecutionMode;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

public class FlinkSmoke {
  public static void main(String[] args) throws Exception {
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    env.setRuntimeMode(RuntimeExecutionMode.BATCH);
    env.fromSequence(1, 1000)
        .map(x -> x * x)
        .returns(Types.LONG)
        .keyBy(x -> x % 2)
        .reduce(Long::sum)
        .print();
    env.execute(args.length > 0 ? args[0] : "smoke");
  }
}

// A small Spark job for `scripts/cluster spark smoke`: the sum of the squares of 1..1000 over four
// partitions, computed by the cluster's executors. Prints sum_of_squares=333833500.
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaSparkContext;

public class SparkSmoke {
  public static void main(String[] args) {
    SparkConf conf = new SparkConf().setAppName(args.length > 0 ? args[0] : "smoke");
    try (JavaSparkContext sc = new JavaSparkContext(conf)) {
      List<Long> numbers = new ArrayList<>();
      for (long i = 1; i <= 1000; i++) {
        numbers.add(i);
      }
      long sum = sc.parallelize(numbers, 4).map(x -> x * x).reduce(Long::sum);
      System.out.println("sum_of_squares=" + sum);
    }
  }
}

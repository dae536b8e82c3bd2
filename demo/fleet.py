"""Creates the demo fleet in a local moto server: a tagged EC2 pool and an Auto Scaling group.

Usage: fleet.py ENDPOINT
The pool `demo-web` has 2 running members, 1 running member with the protection tag and
6 stopped members (the warm pool); the group `demo-workers` starts at 1 instance (min 1, max 8).
"""
import sys

import boto3

AMI = "ami-12c6146b"
REGION = "us-east-1"


def client(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def launch(ec2, n, tags):
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags]}]
    resp = ec2.run_instances(ImageId=AMI, InstanceType="t3.micro", MinCount=n, MaxCount=n,
                             TagSpecifications=spec)
    return sorted(i["InstanceId"] for i in resp["Instances"])


def main():
    endpoint = sys.argv[1]
    ec2 = client("ec2", endpoint)
    pool = ("vmscaler:pool", "demo-web")
    running = launch(ec2, 2, [pool])
    protected = launch(ec2, 1, [pool, ("vmscaler:protect", "true")])
    stopped = launch(ec2, 6, [pool])
    ec2.stop_instances(InstanceIds=stopped)
    ec2.create_launch_template(LaunchTemplateName="demo-workers",
                               LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"})
    client("autoscaling", endpoint).create_auto_scaling_group(
        AutoScalingGroupName="demo-workers", LaunchTemplate={"LaunchTemplateName": "demo-workers"},
        MinSize=1, MaxSize=8, DesiredCapacity=1, AvailabilityZones=[REGION + "a"])
    print(f"demo fleet: pool demo-web running {', '.join(running)}; protected {protected[0]}; "
          f"stopped (warm pool) {', '.join(stopped)}")
    print("demo fleet: Auto Scaling group demo-workers (min 1, max 8, desired 1)")


if __name__ == "__main__":
    main()

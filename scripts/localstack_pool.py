"""Creates a tagged pool in LocalStack (3 running, 2 stopped, high CPU), or prints the pool's
DescribeInstances state. Used by scripts/localstack-dry-run.sh.

    localstack_pool.py ENDPOINT create
    localstack_pool.py ENDPOINT describe
"""
import datetime
import json
import sys

import boto3

endpoint, command = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
ec2 = boto3.client("ec2", **kw)
tag = {"Key": "vmscaler:pool", "Value": "ls-web"}

if command == "create":
    r = ec2.run_instances(ImageId="ami-12345678", MinCount=5, MaxCount=5, InstanceType="t3.micro",
                          TagSpecifications=[{"ResourceType": "instance", "Tags": [tag]}])
    ids = sorted(i["InstanceId"] for i in r["Instances"])
    ec2.stop_instances(InstanceIds=ids[3:])
    cw = boto3.client("cloudwatch", **kw)
    now = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
    for minute in range(2, 16):
        for iid in ids[:3]:
            cw.put_metric_data(Namespace="AWS/EC2", MetricData=[{
                "MetricName": "CPUUtilization", "Dimensions": [{"Name": "InstanceId", "Value": iid}],
                "Timestamp": now - datetime.timedelta(minutes=minute), "Value": 92.0}])
    print(json.dumps({"running": ids[:3], "stopped": ids[3:]}))
elif command == "describe":
    out = ec2.describe_instances(Filters=[{"Name": "tag:vmscaler:pool", "Values": ["ls-web"]}])
    states = sorted((i["InstanceId"], i["State"]["Name"]) for r in out["Reservations"] for i in r["Instances"])
    print(json.dumps(states))
else:
    sys.exit(f"unknown command {command}")
